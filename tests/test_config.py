import pytest
from pydantic import BaseModel

from cortexmap.config import load_config
from cortexmap.errors import CortexmapError


class _Cfg(BaseModel):
    model: str = "zoo:alexnet_sup_s0"
    n: int = 3


@pytest.mark.parametrize("suffix,text", [
    (".toml", 'model = "alexnet"\nn = 5\n'),
    (".yaml", "model: alexnet\nn: 5\n"),
    (".json", '{"model": "alexnet", "n": 5}'),
])
def test_formats_and_overrides(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    cfg = load_config(_Cfg, path)
    assert (cfg.model, cfg.n) == ("alexnet", 5)
    assert load_config(_Cfg, path, n=7, model=None).n == 7


def test_section_and_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[universal]\nn = "many"\n')
    msg = r"Invalid .*c.toml for _Cfg: n: .*Valid fields: model, n"
    with pytest.raises(CortexmapError, match=msg):
        load_config(_Cfg, path, section="universal")
    with pytest.raises(CortexmapError, match="does not exist"):
        load_config(_Cfg, tmp_path / "missing.toml")
    bad = tmp_path / "c.ini"
    bad.write_text("x")
    with pytest.raises(CortexmapError, match="use .toml"):
        load_config(_Cfg, bad)
    broken = tmp_path / "b.toml"
    broken.write_text("n = = 1")
    with pytest.raises(CortexmapError, match="cannot be parsed"):
        load_config(_Cfg, broken)
    broken_yaml = tmp_path / "b.yaml"
    broken_yaml.write_text("n: [1, 2\n")
    with pytest.raises(CortexmapError, match="cannot be parsed"):
        load_config(_Cfg, broken_yaml)


# -- the shared config contract ------------------------------------------------------------------
from cortexmap.analyses.brain import PhantomConfig, SearchlightConfig  # noqa: E402
from cortexmap.analyses.center_periphery import CenterPeripheryConfig  # noqa: E402
from cortexmap.analyses.contrast import ContrastConfig  # noqa: E402
from cortexmap.analyses.lesion import LesionConfig  # noqa: E402
from cortexmap.analyses.synthesis import SynthesisConfig  # noqa: E402
from cortexmap.analyses.universal import UniversalConfig  # noqa: E402

BAD_CONFIGS = [
    (LesionConfig, {"n_top": 0, "n_images": 0}, "n_images.*n_top"),
    (LesionConfig, {"contrasts": [1.0, 5.0]}, "outside"),
    (ContrastConfig, {"contrasts": [1.0, 0.1]}, "at least 3 contrast levels"),
    (SynthesisConfig, {"n_images": 1}, "n_images"),
    (CenterPeripheryConfig, {"rdm_metric": "pearson"}, "rdm_metric"),
    (PhantomConfig, {"snrr": 3}, "snrr"),
    (SearchlightConfig, {"dataset": "d", "correction": "bonferroni"}, "correction"),
    (UniversalConfig, {"rsa_method": "kendall"}, "rsa_method"),
    (PhantomConfig, {"layers": ["conv1"]}, "one region per layer"),
]


@pytest.mark.parametrize(("cls", "values", "named"), BAD_CONFIGS,
                         ids=[f"{c.__name__}-{'-'.join(v)}" for c, v, _ in BAD_CONFIGS])
def test_bad_config_is_one_clear_error(cls, values, named):
    with pytest.raises(CortexmapError, match=f"Invalid settings for {cls.__name__}:.*{named}"):
        cls(**values)


def test_configs_are_frozen_and_share_field_types():
    cfg = SynthesisConfig()
    with pytest.raises(ValueError, match="frozen"):
        cfg.seed = 3
    assert cfg.model_copy(update={"seed": 3}).seed == 3
    # one name per concept, with the rsa vocabulary: aliases map to the canonical method
    assert UniversalConfig(rsa_method="tau-a").rsa_method == "kendall_tau_a"
    for cls in (SynthesisConfig, UniversalConfig, PhantomConfig, CenterPeripheryConfig,
                LesionConfig, ContrastConfig):
        with pytest.raises(CortexmapError, match="seed"):
            cls(seed=-1)
