import pytest


@pytest.fixture(scope="session")
def glyph_cache(tmp_path_factory) -> str:
    """The glyph benchmark rendered once per test session into a private cache dir."""
    from services.maml import glyphs

    d = str(tmp_path_factory.mktemp("glyph-cache"))
    glyphs.load(d)
    return d
