from aiohttp import web


class ApiError(Exception):
    """An error answered in OpenAI's REST envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status)


def call_not_found(status: int = 404) -> ApiError:
    return ApiError(status, "No session found for the provided call_id", code="call_id_not_found")
