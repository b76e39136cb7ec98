"""pipeline/ is the library: it must not import Ray or Prefect."""


def test_library_has_no_ray_or_prefect_imports():
    import ast
    from pathlib import Path

    import videolake.pipeline as pipeline

    for path in Path(pipeline.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in names if m.split(".")[0] in ("ray", "prefect")], path


def test_every_public_name_resolves():
    import videolake.pipeline as pipeline

    missing = [name for name in pipeline.__all__ if getattr(pipeline, name, None) is None]
    assert not missing


def test_the_whole_exception_tree_is_public():
    import videolake.pipeline as pipeline
    from videolake.pipeline import errors

    assert set(errors.__all__) <= set(pipeline.__all__)
    assert all(getattr(pipeline, name) is getattr(errors, name) for name in errors.__all__)
