"""ErrorCode's status mappings and ServiceError's shape (shared by gRPC and REST)."""

from __future__ import annotations

import pytest

from cj.errors import ErrorCode, ServiceError


@pytest.mark.parametrize(
    ("code", "grpc", "http"),
    [
        (ErrorCode.INVALID_ARGUMENT, 3, 400),
        (ErrorCode.NOT_FOUND, 5, 404),
        (ErrorCode.GONE, 5, 410),
        (ErrorCode.ALREADY_EXISTS, 6, 409),
        (ErrorCode.FAILED_PRECONDITION, 9, 409),
        (ErrorCode.ABORTED, 10, 409),
        (ErrorCode.PERMISSION_DENIED, 7, 403),
        (ErrorCode.UNAUTHENTICATED, 16, 401),
        (ErrorCode.RESOURCE_EXHAUSTED, 8, 413),
        (ErrorCode.OUT_OF_RANGE, 11, 416),
        (ErrorCode.UNAVAILABLE, 14, 503),
        (ErrorCode.DEADLINE_EXCEEDED, 4, 504),
        (ErrorCode.CANCELLED, 1, 499),
        (ErrorCode.UNIMPLEMENTED, 12, 501),
        (ErrorCode.INTERNAL, 13, 500),
        (ErrorCode.UNKNOWN, 2, 500),
        (ErrorCode.DATA_LOSS, 15, 500),
    ],
)
def test_every_code_has_its_grpc_and_http_status(code: ErrorCode, grpc: int, http: int) -> None:
    assert (code.grpc_status, code.http_status) == (grpc, http)


def test_every_code_is_mapped() -> None:
    for code in ErrorCode:
        assert 1 <= code.grpc_status <= 16
        assert 400 <= code.http_status <= 599


def test_grpc_status_maps_back_to_the_canonical_code() -> None:
    for code in ErrorCode:
        back = ErrorCode.from_grpc_status(code.grpc_status)
        # GONE travels as NOT_FOUND; every other code round-trips.
        assert back is (ErrorCode.NOT_FOUND if code is ErrorCode.GONE else code)
    assert ErrorCode.from_grpc_status(99) is ErrorCode.UNKNOWN


def test_invalid_names_the_field_in_the_message_and_the_body() -> None:
    error = ServiceError.invalid("limit", "must be between 1 and 1000")
    assert error.code is ErrorCode.INVALID_ARGUMENT
    assert error.field == "limit"
    assert error.message == "must be between 1 and 1000"
    assert str(error) == "limit: must be between 1 and 1000"
    assert error.to_dict() == {
        "code": "INVALID_ARGUMENT",
        "message": "limit: must be between 1 and 1000",
        "field": "limit",
    }


def test_error_without_field() -> None:
    error = ServiceError.gone("the recording was purged")
    assert (error.code, error.code.grpc_status, error.code.http_status) == (ErrorCode.GONE, 5, 410)
    assert str(error) == "the recording was purged"
    assert error.to_dict() == {"code": "GONE", "message": "the recording was purged"}
    assert "GONE" in repr(error)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ServiceError.not_found("x"), ErrorCode.NOT_FOUND),
        (ServiceError.already_exists("x"), ErrorCode.ALREADY_EXISTS),
        (ServiceError.failed_precondition("x"), ErrorCode.FAILED_PRECONDITION),
        (ServiceError.aborted("x"), ErrorCode.ABORTED),
        (ServiceError.permission_denied("x"), ErrorCode.PERMISSION_DENIED),
        (ServiceError.unauthenticated("x"), ErrorCode.UNAUTHENTICATED),
        (ServiceError.resource_exhausted("x"), ErrorCode.RESOURCE_EXHAUSTED),
        (ServiceError.out_of_range("offset", "x"), ErrorCode.OUT_OF_RANGE),
        (ServiceError.unavailable("x"), ErrorCode.UNAVAILABLE),
        (ServiceError.data_loss("x"), ErrorCode.DATA_LOSS),
        (ServiceError.unimplemented("x"), ErrorCode.UNIMPLEMENTED),
        (ServiceError.internal(), ErrorCode.INTERNAL),
    ],
)
def test_constructors_set_their_code(error: ServiceError, code: ErrorCode) -> None:
    assert error.code is code


def test_code_given_as_text_is_checked() -> None:
    assert ServiceError("NOT_FOUND", "x").code is ErrorCode.NOT_FOUND  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NOPE"):
        ServiceError("NOPE", "x")  # type: ignore[arg-type]
