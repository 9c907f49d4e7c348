"""The preset catalog: builtin data, lookups the way users spell names, and ConfigMap overrides."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from pydantic import ValidationError

from kaito.presets.catalog import Catalog, CatalogError, ModelSpec, SkuSpec, UnknownModel, UnknownSku

KIB = 1024

LEGACY_PRESETS = [
    "phi-4",
    "phi-4-mini-instruct",
    "phi-3-mini-4k-instruct",
    "phi-3-mini-128k-instruct",
    "phi-3-medium-4k-instruct",
    "phi-3-medium-128k-instruct",
    "phi-3.5-mini-instruct",
    "qwen2.5-coder-7b-instruct",
    "qwen2.5-coder-32b-instruct",
    "deepseek-r1-distill-llama-8b",
    "deepseek-r1-distill-qwen-14b",
    "llama-3.1-8b-instruct",
    "llama-3.3-70b-instruct",
    "deepseek-r1-0528",
    "deepseek-v3-0324",
    "mistral-7b",
    "mistral-7b-instruct",
    "ministral-3-3b-instruct",
    "ministral-3-8b-instruct",
    "ministral-3-14b-instruct",
    "mistral-large-3-675b-instruct",
    "gemma-3-4b-instruct",
    "gemma-3-27b-instruct",
    "gpt-oss-20b",
    "gpt-oss-120b",
]
RETIRED_PRESETS = ["falcon-7b", "falcon-7b-instruct", "falcon-40b", "falcon-40b-instruct", "phi-2"]

# KAITO's BytesPerToken (fp16 KV, all layers) for the presets where it follows the architecture.
KAITO_BYTES_PER_TOKEN = {
    "phi-4": 204800,
    "phi-4-mini-instruct": 131072,
    "phi-3-mini-4k-instruct": 393216,
    "phi-3-mini-128k-instruct": 393216,
    "phi-3-medium-4k-instruct": 204800,
    "phi-3-medium-128k-instruct": 204800,
    "phi-3.5-mini-instruct": 393216,
    "qwen2.5-coder-7b-instruct": 57344,
    "qwen2.5-coder-32b-instruct": 262144,
    "deepseek-r1-distill-llama-8b": 131072,
    "deepseek-r1-distill-qwen-14b": 196608,
    "llama-3.1-8b-instruct": 131072,
    "llama-3.3-70b-instruct": 327680,
    "deepseek-r1-0528": 70272,
    "deepseek-v3-0324": 70272,
    "mistral-7b": 131072,
    "mistral-7b-instruct": 131072,
    "ministral-3-3b-instruct": 106496,
    "ministral-3-8b-instruct": 139264,
    "ministral-3-14b-instruct": 163840,
    "mistral-large-3-675b-instruct": 70272,
    "falcon-7b": 8192,
    "falcon-7b-instruct": 8192,
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.builtin()


def test_builtin_loads_once_with_models_skus_and_price_provenance(catalog: Catalog) -> None:
    assert Catalog.builtin() is catalog
    assert len(catalog.models) >= len(LEGACY_PRESETS) + len(RETIRED_PRESETS)
    assert {"azure", "aws", "arc"} == {s.cloud for s in catalog.skus.values()}
    assert catalog.price_source and catalog.price_retrieved


@pytest.mark.parametrize("name", LEGACY_PRESETS)
def test_every_legacy_preset_resolves_and_is_current(catalog: Catalog, name: str) -> None:
    spec = catalog.model(name)
    assert spec.name == name
    assert not spec.is_deprecated
    assert spec.weight_bytes > 0 and spec.max_position_embeddings >= 4096


@pytest.mark.parametrize("name", RETIRED_PRESETS)
def test_retired_presets_resolve_with_a_reason_naming_a_replacement(catalog: Catalog, name: str) -> None:
    spec = catalog.model(name)
    assert spec.deprecated is not None and "upstream" in spec.deprecated
    replacements = [n for n in catalog.models if n in spec.deprecated and not catalog.models[n].is_deprecated]
    assert replacements, spec.deprecated


def test_falcon_allows_neither_lora_nor_tensor_parallel(catalog: Catalog) -> None:
    for name in ("falcon-7b", "falcon-40b-instruct"):
        spec = catalog.model(name)
        assert not spec.supports_lora and not spec.supports_tensor_parallel


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("microsoft/Phi-3-mini-4k-instruct", "phi-3-mini-4k-instruct", id="hf-id"),
        pytest.param("MICROSOFT/PHI-3-MINI-4K-INSTRUCT", "phi-3-mini-4k-instruct", id="hf-id-upper"),
        pytest.param("Phi-4", "phi-4", id="name-mixed-case"),
        pytest.param("  phi-4 ", "phi-4", id="name-padded"),
        pytest.param("gemma-3-4b-it", "gemma-3-4b-instruct", id="alias"),
        pytest.param("Google/Gemma-3-27B-IT", "gemma-3-27b-instruct", id="hf-id-of-aliased"),
        pytest.param("Mistral-7B-Instruct-v0.3", "mistral-7b-instruct", id="hf-basename"),
        pytest.param("deepseek-ai/DeepSeek-R1-0528", "deepseek-r1-0528", id="hf-id-deepseek"),
    ],
)
def test_aliases_and_hf_ids_resolve_case_insensitively(catalog: Catalog, query: str, expected: str) -> None:
    assert catalog.model(query).name == expected
    assert catalog.find_model(query) is catalog.models[expected]


def test_unknown_model_suggests_close_names(catalog: Catalog) -> None:
    with pytest.raises(UnknownModel) as info:
        catalog.model("phi-3-mini-4k-instruc")
    assert info.value.name == "phi-3-mini-4k-instruc"
    assert info.value.suggestions[0] == "phi-3-mini-4k-instruct"
    assert len(info.value.suggestions) == len(set(info.value.suggestions))
    assert isinstance(info.value, CatalogError)
    assert catalog.find_model("phi-3-mini-4k-instruc") is None


def test_unknown_model_without_close_names_suggests_nothing(catalog: Catalog) -> None:
    with pytest.raises(UnknownModel) as info:
        catalog.model("zzzz-not-a-model")
    assert info.value.suggestions == []


@pytest.mark.parametrize(
    ("name", "kib"),
    [
        pytest.param("phi-3-mini-4k-instruct", 384, id="phi-3-mini"),
        pytest.param("llama-3.1-8b-instruct", 128, id="llama-3.1-8b"),
        pytest.param("qwen2.5-7b-instruct", 56, id="qwen2.5-7b"),
        pytest.param("falcon-7b", 8, id="falcon-7b"),
        pytest.param("llama-3.3-70b-instruct", 320, id="llama-3.3-70b"),
        pytest.param("deepseek-r1-distill-qwen-14b", 192, id="r1-qwen-14b"),
        pytest.param("gemma-3-27b-instruct", 496, id="gemma-3-27b"),
    ],
)
def test_kv_bytes_per_token_match_sizing_facts(catalog: Catalog, name: str, kib: int) -> None:
    assert catalog.model(name).kv_bytes_per_token() == kib * KIB


@pytest.mark.parametrize(("name", "bpt"), sorted(KAITO_BYTES_PER_TOKEN.items()))
def test_kv_bytes_per_token_match_kaito_bytes_per_token(catalog: Catalog, name: str, bpt: int) -> None:
    spec = catalog.model(name)
    assert spec.kv_bytes_per_token(dtype_bytes=2) == bpt
    assert spec.kv_bytes_per_token(dtype_bytes=1) == bpt // 2  # fp8 KV halves it


@pytest.mark.parametrize(
    ("name", "kaito_bpt", "ours"),
    [
        pytest.param("gemma-3-4b-instruct", 348160, 2 * 34 * 4 * 256 * 2, id="gemma-3-4b"),
        pytest.param("gpt-oss-20b", 34560, 2 * 24 * 8 * 64 * 2, id="gpt-oss-20b-head-dim-64-not-45"),
        pytest.param("falcon-40b", 8192, 2 * 60 * 8 * 64 * 2, id="falcon-40b-not-falcon-7b"),
    ],
)
def test_kv_bytes_follow_the_architecture_where_kaito_is_wrong(
    catalog: Catalog, name: str, kaito_bpt: int, ours: int
) -> None:
    assert catalog.model(name).kv_bytes_per_token() == ours != kaito_bpt


def test_mla_models_cache_the_latent_not_per_head_kv(catalog: Catalog) -> None:
    spec = catalog.model("deepseek-v3-0324")
    assert spec.kv_layout == "mla" and spec.quantization == "fp8"
    assert spec.kv_bytes_per_token() == 61 * (512 + 64) * 2


def test_sliding_window_and_quantization_are_recorded(catalog: Catalog) -> None:
    gemma = catalog.model("gemma-3-27b-instruct")
    assert (gemma.sliding_window, gemma.sliding_window_pattern) == (1024, 6)
    assert catalog.model("gpt-oss-120b").quantization == "mxfp4"
    assert {catalog.model(f"ministral-3-{s}-instruct").quantization for s in ("3b", "8b", "14b")} == {"fp8"}


def test_revisions_are_pinned_commits_or_main(catalog: Catalog) -> None:
    for spec in catalog.models.values():
        assert spec.revision == "main" or re.fullmatch(r"[0-9a-f]{40}", spec.revision), spec.name
    assert catalog.model("llama-3.1-8b-instruct").revision == "0e9e39f249a16976918f6564b8830bc894c89659"


def test_gated_models_require_a_download_token(catalog: Catalog) -> None:
    assert catalog.model("llama-3.1-8b-instruct").download_auth_required
    assert catalog.model("gemma-3-4b-instruct").download_auth_required
    assert not catalog.model("phi-4").download_auth_required


def test_visible_memory_is_below_marketing_memory_for_every_nvidia_sku(catalog: Catalog) -> None:
    nvidia = [s for s in catalog.skus.values() if s.gpu_vendor == "nvidia"]
    assert len(nvidia) > 40
    for sku in nvidia:
        assert sku.gpu_memory_gib < sku.marketing_memory_gib, sku.name
        assert sku.compute_capability is not None


@pytest.mark.parametrize(
    ("name", "cc"),
    [
        pytest.param("Standard_NC6s_v3", 7.0, id="v100-1"),
        pytest.param("Standard_NC12s_v3", 7.0, id="v100-2"),
        pytest.param("Standard_NC24s_v3", 7.0, id="v100-4"),
        pytest.param("Standard_NC24rs_v3", 7.0, id="v100-4-rdma"),
        pytest.param("Standard_NC4as_T4_v3", 7.5, id="t4-1"),
        pytest.param("Standard_NC64as_T4_v3", 7.5, id="t4-4"),
    ],
)
def test_pre_ampere_skus_are_present_without_bfloat16(catalog: Catalog, name: str, cc: float) -> None:
    sku = catalog.sku(name)
    assert sku.compute_capability == cc < 8.0
    assert not sku.supports_bfloat16


def test_v100_skus_carry_their_retirement(catalog: Catalog) -> None:
    assert "2025-09-30" in (catalog.sku("Standard_NC6s_v3").retired or "")
    assert catalog.sku("Standard_NC24ads_A100_v4").retired is None


def test_amd_sku_has_no_compute_capability(catalog: Catalog) -> None:
    mi300x = catalog.sku("Standard_ND96isr_MI300X_v5")
    assert (mi300x.gpu_vendor, mi300x.compute_capability, mi300x.gpu_count) == ("amd", None, 8)


def test_sku_lookup_is_case_insensitive_and_misses_suggest(catalog: Catalog) -> None:
    assert catalog.sku("standard_nc24ads_a100_v4").name == "Standard_NC24ads_A100_v4"
    assert catalog.find_sku("nope") is None
    with pytest.raises(UnknownSku) as info:
        catalog.sku("Standard_NC24ads_A100_v3")
    assert "Standard_NC24ads_A100_v4" in info.value.suggestions


@pytest.mark.parametrize("cloud", ["azure", "AWS", "arc"])
def test_skus_for_a_cloud_are_sorted_by_price_with_unpriced_last(catalog: Catalog, cloud: str) -> None:
    skus = catalog.skus_for(cloud)
    assert skus and {s.cloud for s in skus} == {cloud.lower()}
    priced = [s.hourly_price_usd for s in skus if s.hourly_price_usd is not None]
    assert priced == sorted(priced)
    first_unpriced = next((i for i, s in enumerate(skus) if s.hourly_price_usd is None), len(skus))
    assert all(s.hourly_price_usd is None for s in skus[first_unpriced:])
    unpriced_names = [s.name for s in skus[first_unpriced:]]
    assert unpriced_names == sorted(unpriced_names, key=str.lower)


def test_azure_has_prices_and_unknown_cloud_is_refused(catalog: Catalog) -> None:
    assert catalog.skus_for("azure")[0].hourly_price_usd is not None
    with pytest.raises(CatalogError, match="gcp"):
        catalog.skus_for("gcp")


NEW_MODEL = """
models:
  - name: MyOrg/Tiny-Chat-1B
    parameters_b: 1.1
    weight_bytes: 2200000000
    layers: 22
    attention_heads: 32
    kv_heads: 4
    head_dim: 64
    hidden_size: 2048
    max_position_embeddings: 2048
    architectures: [LlamaForCausalLM]
  - name: microsoft/phi-4
    max_position_embeddings: 8192
"""


def test_overrides_add_an_hf_model_and_patch_an_existing_one(catalog: Catalog) -> None:
    patched = catalog.with_overrides({"models.yaml": NEW_MODEL})
    tiny = patched.model("myorg/tiny-chat-1b")
    assert (tiny.name, tiny.hf_repo, tiny.revision) == ("myorg/tiny-chat-1b", "MyOrg/Tiny-Chat-1B", "main")
    assert patched.model("Tiny-Chat-1B") is tiny
    assert tiny.kv_bytes_per_token() == 2 * 22 * 4 * 64 * 2
    phi4 = patched.model("phi-4")
    assert phi4.max_position_embeddings == 8192 and phi4.layers == 40 and phi4.name == "phi-4"
    assert catalog.model("phi-4").max_position_embeddings == 16384
    assert catalog.find_model("myorg/tiny-chat-1b") is None


def test_overrides_change_a_price_and_a_skus_memory_and_add_a_sku(catalog: Catalog) -> None:
    patched = catalog.with_overrides(
        {
            "skus.yaml": """
skus:
  - name: standard_nc24ads_a100_v4
    gpu_memory_gib: 78.5
  - name: Standard_NC4_A100_lab
    cloud: azure
    gpu_model: NVIDIA A100 80GB PCIe
    gpu_count: 1
    gpu_memory_gib: 78.0
    marketing_memory_gib: 80
    compute_capability: 8.0
""",
            "prices.yaml": "prices:\n  Standard_NC24ads_A100_v4: 2.5\n  Standard_NC4_A100_lab: 0.01\n",
        }
    )
    sku = patched.sku("Standard_NC24ads_A100_v4")
    assert (sku.gpu_memory_gib, sku.hourly_price_usd, sku.vcpus, sku.gpu_count) == (78.5, 2.5, 24, 1)
    assert patched.skus_for("azure")[0].name == "Standard_NC4_A100_lab"
    assert catalog.sku("Standard_NC24ads_A100_v4").gpu_memory_gib == 78.96
    assert patched.price_source == catalog.price_source


def test_a_sku_patch_keeps_its_price(catalog: Catalog) -> None:
    patched = catalog.with_overrides({"skus.yaml": "skus:\n  - name: g5.xlarge\n    vcpus: 4\n"})
    assert patched.sku("g5.xlarge").hourly_price_usd == catalog.sku("g5.xlarge").hourly_price_usd


def test_a_null_price_makes_a_sku_unpriced(catalog: Catalog) -> None:
    patched = catalog.with_overrides({"prices.yaml": "prices:\n  g5.xlarge: null\n"})
    assert patched.sku("g5.xlarge").hourly_price_usd is None
    assert patched.skus_for("aws")[-1].name == "g5.xlarge" or patched.skus_for("aws")[-1].hourly_price_usd is None


def test_empty_overrides_change_nothing(catalog: Catalog) -> None:
    patched = catalog.with_overrides({"models.yaml": "", "skus.yaml": "skus: []\n"})
    assert dict(patched.models) == dict(catalog.models) and dict(patched.skus) == dict(catalog.skus)


ALIAS_CLASH = """
models:
  - {name: a/b, aliases: [phi-4], parameters_b: 1, weight_bytes: 1, layers: 1, attention_heads: 1,
     kv_heads: 1, head_dim: 1, hidden_size: 1, max_position_embeddings: 1}
"""


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        pytest.param(
            {"models.yaml": "models:\n  - name: phi-4\n    layer: 41\n"},
            ["models.yaml", "models[0] (phi-4).layer", "Extra inputs are not permitted"],
            id="unknown-field",
        ),
        pytest.param(
            {"models.yaml": "models:\n  - name: phi-4\n    layers: lots\n"},
            ["models.yaml", "models[0] (phi-4).layers", "integer"],
            id="wrong-type",
        ),
        pytest.param(
            {"models.yaml": "models:\n  - name: new/model\n    layers: 2\n"},
            ["models.yaml", "models[0] (new/model).weight_bytes", "Field required"],
            id="incomplete-new-entry",
        ),
        pytest.param(
            {"models.yaml": "models: [name: phi-4\n"},
            ["models.yaml", "invalid YAML"],
            id="bad-yaml",
        ),
        pytest.param(
            {"models.yaml": "model:\n  - name: phi-4\n"},
            ["models.yaml", "model"],
            id="unknown-top-level-field",
        ),
        pytest.param(
            {"models.yaml": ALIAS_CLASH},
            ["models.yaml", "phi-4"],
            id="alias-clash",
        ),
        pytest.param(
            {"skus.yaml": "skus:\n  - name: g5.xlarge\n    gpu_memory_gib: 30\n"},
            ["skus.yaml", "skus[0] (g5.xlarge)", "marketing_memory_gib"],
            id="visible-above-marketing",
        ),
        pytest.param(
            {"skus.yaml": "skus:\n  - name: g5.xlarge\n    gpu_count: two\n"},
            ["skus.yaml", "skus[0] (g5.xlarge).gpu_count"],
            id="sku-wrong-type",
        ),
        pytest.param(
            {"prices.yaml": "prices:\n  Standard_NC999: 1.0\n"},
            ["prices.yaml", "prices.Standard_NC999", "unknown instance type"],
            id="price-for-unknown-sku",
        ),
        pytest.param(
            {"prices.yaml": "prices:\n  g5.xlarge: cheap\n"},
            ["prices.yaml", "prices.g5.xlarge"],
            id="price-not-a-number",
        ),
        pytest.param({"model.yaml": "models: []\n"}, ["model.yaml", "unknown key"], id="unknown-configmap-key"),
    ],
)
def test_bad_overrides_name_the_key_and_the_field(catalog: Catalog, data: dict[str, str], fragments: list[str]) -> None:
    with pytest.raises(CatalogError) as info:
        catalog.with_overrides(data)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_override_errors_carry_the_configmap_key(catalog: Catalog) -> None:
    with pytest.raises(CatalogError) as info:
        catalog.with_overrides({"skus.yaml": "skus: {}\n"})
    assert info.value.key == "skus.yaml"


def test_specs_are_frozen_and_reject_inconsistent_mla() -> None:
    spec = Catalog.builtin().model("phi-4")
    with pytest.raises(ValidationError):
        spec.layers = 1
    data = spec.model_dump() | {"kv_layout": "mla"}
    with pytest.raises(ValidationError, match="kv_lora_rank"):
        ModelSpec.model_validate(data)


def test_specs_round_trip_through_their_dump(catalog: Catalog) -> None:
    for model in catalog.models.values():
        assert ModelSpec.model_validate(model.model_dump()) == model
    for sku in catalog.skus.values():
        assert SkuSpec.model_validate(sku.model_dump()) == sku


def test_packaged_data_files_ship_in_the_wheel() -> None:
    data = resources.files("kaito.presets") / "data"
    names = sorted(p.name for p in data.iterdir() if p.name.endswith(".yaml"))
    assert names == ["models.yaml", "prices.yaml", "skus.yaml"]
    assert (data / "models.yaml").is_file()
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    package_data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["kaito"]
    for name in names:
        assert any(fnmatch.fnmatch(f"presets/data/{name}", pattern) for pattern in package_data), name
