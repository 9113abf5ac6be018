"""The public API is exactly stalwart.__all__ (as httpx checks its own)."""

import stalwart


def test_all_names_exist_and_are_sorted():
    assert stalwart.__all__ == sorted(stalwart.__all__)
    for name in stalwart.__all__:
        assert hasattr(stalwart, name), name


def test_no_private_module_leaks_into_the_api():
    for name in stalwart.__all__:
        obj = getattr(stalwart, name)
        module = getattr(obj, "__module__", "stalwart") or "stalwart"
        assert module.startswith("stalwart"), (name, module)
        assert not name.startswith("_") or name == "__version__"


def test_public_names_are_not_duplicated():
    assert len(stalwart.__all__) == len(set(stalwart.__all__))


def test_the_version_is_written_once():
    """pyproject.toml reads the version from stalwart.__version__ (hatch), so the installed
    distribution's metadata and the module always agree."""
    import importlib.metadata

    assert importlib.metadata.version("stalwart") == stalwart.__version__
