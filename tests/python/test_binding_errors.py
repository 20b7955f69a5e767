"""meshd.errors: one class per canonical code, raised from C++ statuses by the translator."""

from __future__ import annotations

import pickle

import pytest

import meshd
from meshd import _core, errors

CODES = {
    1: ("CANCELLED", meshd.Cancelled),
    2: ("UNKNOWN", meshd.Unknown),
    3: ("INVALID_ARGUMENT", meshd.InvalidArgument),
    4: ("DEADLINE_EXCEEDED", meshd.DeadlineExceeded),
    5: ("NOT_FOUND", meshd.NotFound),
    6: ("ALREADY_EXISTS", meshd.AlreadyExists),
    7: ("PERMISSION_DENIED", meshd.PermissionDenied),
    8: ("RESOURCE_EXHAUSTED", meshd.ResourceExhausted),
    9: ("FAILED_PRECONDITION", meshd.FailedPrecondition),
    10: ("ABORTED", meshd.Aborted),
    11: ("OUT_OF_RANGE", meshd.OutOfRange),
    12: ("UNIMPLEMENTED", meshd.Unimplemented),
    13: ("INTERNAL", meshd.Internal),
    14: ("UNAVAILABLE", meshd.Unavailable),
    15: ("DATA_LOSS", meshd.DataLoss),
    16: ("UNAUTHENTICATED", meshd.Unauthenticated),
}


@pytest.mark.parametrize("value", sorted(CODES))
def test_status_from_cpp_raises_the_class_of_its_code(value: int) -> None:
    name, cls = CODES[value]
    with pytest.raises(cls) as info:
        _core._raise_status(value, f"the C++ message of {name}")
    e = info.value
    assert type(e) is cls
    assert isinstance(e, meshd.Error) and isinstance(e, RuntimeError)
    assert e.code == name
    assert e.code_value == value
    assert str(e) == f"the C++ message of {name}"


def test_unknown_code_is_unknown() -> None:
    with pytest.raises(meshd.Unknown) as info:
        _core._raise_status(99, "odd")
    assert info.value.code == "UNKNOWN" and str(info.value) == "odd"


def test_a_message_that_is_not_utf8_keeps_its_error_class() -> None:
    # A message quoting bytes a peer sent: escaped, never a UnicodeDecodeError instead.
    with pytest.raises(meshd.DeadlineExceeded) as info:
        _core._raise_status(4, b"key 'a\xc3' not set")  # type: ignore[arg-type]
    assert str(info.value) == "key 'a\\xc3' not set"


def test_deadline_exceeded_is_a_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        _core._raise_status(4, "late")
    assert issubclass(meshd.DeadlineExceeded, TimeoutError)
    assert not issubclass(meshd.Aborted, TimeoutError)


def test_error_class_by_name_and_number() -> None:
    for value, (name, cls) in CODES.items():
        assert errors.error_class(value) is cls
        assert errors.error_class(name) is cls
    assert errors.error_class("NOPE") is meshd.Unknown


def test_every_class_is_exported_documented_and_picklable() -> None:
    for _, cls in CODES.values():
        assert getattr(meshd, cls.__name__) is cls
        assert cls.__doc__
        e = pickle.loads(pickle.dumps(cls("m")))
        assert type(e) is cls and str(e) == "m" and e.code == cls.code


def test_public_names_have_docstrings() -> None:
    for name in meshd.__all__:
        obj = getattr(meshd, name)
        assert obj.__doc__, name
    for cls in (meshd.Client, meshd.DeviceMesh):
        for attr, value in vars(cls).items():
            if attr.startswith("__") or attr in ("__slots__",):
                continue
            if attr.startswith("_") and attr not in ("_flatten", "_unflatten", "_concatenate"):
                continue
            doc = value.__doc__ if not isinstance(value, staticmethod) else value.__func__.__doc__
            assert doc, f"{cls.__name__}.{attr}"


def test_wrong_types_are_type_errors_not_crashes() -> None:
    with pytest.raises(TypeError):
        _core._raise_status("x", "y")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        meshd.attach(job="j", nnodes=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        meshd.attach(job="j", timeout="soon")  # type: ignore[arg-type]
