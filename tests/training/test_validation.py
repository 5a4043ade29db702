"""Every architecture rule with the failing layer named, hyperparameters out of range, the 409 rules."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from shared.models.training import Architecture, ArchitectureError, Hyperparams, check_architecture
from tests.training.helpers import CNN, MLP, cancel, hyperparams

# One daemon for the module: these requests are refused and store nothing (the 409 test keeps its own).
pytestmark = pytest.mark.shared_daemon


def with_layers(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    arch = copy.deepcopy(base)
    for index, layer in changes.items():
        arch["layers"][int(index.removeprefix("l"))] = layer
    return arch


def message(arch: dict[str, Any], max_linear: int = 5) -> str:
    with pytest.raises((ArchitectureError, ValueError)) as caught:
        check_architecture(Architecture.model_validate(arch), 10, max_linear)
    return str(caught.value)


def test_seed_architectures_chain() -> None:
    shapes = check_architecture(Architecture.model_validate(CNN))
    assert [str(s) for s in shapes][:3] == ["4 x 28 x 28", "4 x 28 x 28", "4 x 14 x 14"]
    assert str(shapes[-1]) == "10"
    assert str(check_architecture(Architecture.model_validate(MLP))[-1]) == "10"


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        (with_layers(MLP, l2={"type": "linear", "in": 31, "out": 10}),
         "layers[2] (linear): expects 31 inputs but the previous layer gives 32"),
        (with_layers(MLP, l2={"type": "linear", "in": 32, "out": 9}),
         "layers[3] (softmax): the model outputs 9 values but the dataset has 10 classes"),
        (with_layers(MLP, l1={"type": "softmax"}), "layers[1] (softmax): softmax is allowed only as the last layer"),
        (with_layers(CNN, l3={**CNN["layers"][3], "in_channels": 5}),
         "layers[3] (conv2d): in_channels is 5 but the input has 4 channels"),
        (with_layers(CNN, l7={"type": "linear", "in": 3136, "out": 32}),
         "layers[7] (linear): expects 3136 inputs but the previous layer gives 392"),
        (with_layers(CNN, l6={"type": "relu"}), "layers[7] (linear): gets a 8 x 7 x 7 input; add a flatten layer"),
        (with_layers(CNN, l0={**CNN["layers"][0], "stride": 2}), 'layers[0] (conv2d): padding "same" needs stride 1'),
        (with_layers(CNN, l2={"type": "maxpool2d", "kernel_size": 2, "padding": 2}),
         "layers[2] (maxpool2d): padding must be at most half of kernel_size"),
        (with_layers(CNN, l0={**CNN["layers"][0], "kernel_size": 40, "padding": 0}),
         "layers[0] (conv2d): kernel_size 40 does not fit the 28 x 28 input"),
        ({**MLP, "layers": [{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3}]},
         "layers[0] (conv2d): needs a channels x height x width input but gets 784"),
        ({"input_size": 10, "layers": [{"type": "relu"}]}, "layers: at least one linear or conv2d layer"),
    ],
)  # fmt: skip
def test_architecture_rules_name_the_layer(arch: dict[str, Any], expected: str) -> None:
    assert message(arch).startswith(expected), message(arch)


def test_linear_layer_cap_is_configurable() -> None:
    layers = [{"type": "linear", "in": 784, "out": 16}]
    layers += [{"type": "linear", "in": 16, "out": 16} for _ in range(4)] + [{"type": "linear", "in": 16, "out": 10}]
    arch = {"input_size": 784, "layers": layers}
    assert message(arch).startswith("layers[5] (linear): more than 5 linear layers")
    check_architecture(Architecture.model_validate(arch), 10, max_linear=6)


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ({"input_size": 784, "layers": [{"type": "gelu"}]}, "layers[0]: unknown layer type 'gelu'"),
        ({"input_size": 784, "layers": [{"type": "linear", "in": 784}]}, "out"),
        ({"input_size": 784, "layers": [{"type": "dropout", "p": 1.5}]}, "p"),
        ({"input_size": 784, "input_channels": 1, "layers": [{"type": "relu"}]}, "go together"),
        ({"input_size": 700, "input_channels": 1, "input_height": 28, "input_width": 28, "layers": [{"type": "relu"}]},
         "input_size: 700 is not"),
        ({"layers": [{"type": "relu"}]}, "input_size"),
        ({"input_size": 784, "layers": [{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3,
                                          "padding": "valid"}]}, "padding"),
    ],
)  # fmt: skip
async def test_malformed_architectures_are_400(http: httpx.AsyncClient, arch: dict[str, Any], expected: str) -> None:
    response = await http.post("/api/models", json={"architecture": arch})
    assert response.status_code == 400, response.text
    assert expected in response.json()["error"]


@pytest.mark.parametrize("field", ["name", "description", "saved_model_path"])
@pytest.mark.parametrize("value", [["a list"], {"an": "object"}, 7, "x" * 20_000], ids=["list", "dict", "int", "long"])
async def test_model_text_fields_must_be_text(http: httpx.AsyncClient, field: str, value: Any) -> None:
    for path in ("/api/models", "/api/models/m_text/save"):
        if field == "saved_model_path" and path.endswith("save"):
            continue  # save sets it itself
        response = await http.post(path, json={field: value})
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith(f"{field}: must be a string")
    assert (await http.get("/api/models")).json() == []


async def test_a_saved_model_path_the_os_cannot_look_up_is_not_a_file(http: httpx.AsyncClient) -> None:
    """A path whose name is longer than the file system takes (the fuzz sent one) is stored as given and shown as
    not existing: looking it up raised ENAMETOOLONG, a 500 on every later `GET /api/models`."""
    created = await http.post("/api/models", json={"model_id": "m_long_path", "saved_model_path": "p" * 300})
    assert created.status_code == 201, created.text
    assert created.json()["saved_model_exists"] is False
    listed = await http.get("/api/models")
    assert listed.status_code == 200
    assert [model["saved_model_exists"] for model in listed.json() if model["model_id"] == "m_long_path"] == [False]
    assert (await http.delete("/api/v1/models/m_long_path")).status_code in (200, 204)  # the module shares a daemon


async def test_dimension_error_over_http_names_the_layer(http: httpx.AsyncClient) -> None:
    bad = with_layers(CNN, l7={"type": "linear", "in": 3136, "out": 32})
    response = await http.post("/api/train", json={"architecture": bad, "hyperparams": hyperparams()})
    assert response.status_code == 400
    assert response.json() == {
        "error": "architecture.layers[7] (linear): expects 3136 inputs but the previous layer gives 392"
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"epochs": 0}, "hyperparams.epochs"),
        ({"batch_size": -1}, "hyperparams.batch_size"),
        ({"optimizer": {"type": "rmsprop", "lr": 0.1}}, "hyperparams.optimizer.type"),
        ({"optimizer": {"type": "sgd", "lr": 0}}, "hyperparams.optimizer.lr"),
        ({"optimizer": {"type": "sgd", "momentum": 1.5}}, "hyperparams.optimizer.momentum"),
        ({"train_split": 1.0}, "hyperparams.train_split"),
        ({"max_samples": 3}, "hyperparams.max_samples"),
        ({"device": "tpu"}, "hyperparams.device"),
        ({"layerwise_overhead": 0}, "hyperparams.layerwise_overhead"),
        ({"layerwise_overhead": 1.0}, "hyperparams.layerwise_overhead"),
        ({"layerwise_overhead": "3%"}, "hyperparams.layerwise_overhead"),
        ({"loss": "hinge"}, "hyperparams.loss"),
        ({"lr_schedule": {"type": "exponential"}}, "hyperparams.lr_schedule.type"),
        ({"learning_rat": 0.1}, "hyperparams.learning_rat"),
    ],
)
async def test_hyperparameters_out_of_range(http: httpx.AsyncClient, change: dict[str, Any], field: str) -> None:
    response = await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams(**change)})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(field), response.json()


@pytest.mark.own_daemon  # creates a model and fills the only training slot
async def test_model_train_conflicting_hyperparams_is_409(http: httpx.AsyncClient) -> None:
    model_id = (await http.post("/api/models", json={"architecture": MLP, "hyperparams": hyperparams()})).json()
    model_id = model_id["model_id"]
    long = hyperparams(epochs=50, max_samples=5000, batch_size=4)
    first = await http.post(f"/api/models/{model_id}/train", json={"hyperparams": long})
    assert first.status_code == 202
    clash = await http.post(f"/api/models/{model_id}/train", json={"hyperparams": hyperparams()})
    assert clash.status_code == 409 and "different hyperparameters" in clash.json()["error"]
    # Seed 001's rule: the only slot is busy, so an inline train is refused too.
    busy = await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams()})
    assert busy.status_code == 409 and "already active" in busy.json()["error"]
    assert await cancel(http, first.json()["run_id"]) == "cancelled"


async def test_unknown_ids_are_404(http: httpx.AsyncClient) -> None:
    for path in ("/api/models/m_nope", "/api/runs/r_nope", "/api/params/p_nope", "/api/models/m_nope/runs"):
        response = await http.get(path)
        assert response.status_code == 404 and "not found" in response.json()["error"], path
    assert (await http.post("/api/train/r_nope/cancel")).status_code == 404
    session = await http.get("/api/v1/training/sessions/r_nope")
    assert session.status_code == 404 and session.json()["error"]["code"] == "not_found"


HYPERPARAMS = ", ".join(Hyperparams.model_fields)


async def test_unknown_hyperparameters_list_the_valid_names(http: httpx.AsyncClient) -> None:
    train = await http.post("/api/train", json={"architecture": MLP, "hyperparams": {"learning_rat": 0.1}})
    assert train.json() == {"error": f"hyperparams.learning_rat: unknown field 'learning_rat'; one of {HYPERPARAMS}"}
    nested = await http.post("/api/train", json={"architecture": MLP, "hyperparams": {"optimizer": {"lrr": 0.1}}})
    assert nested.json() == {
        "error": "hyperparams.optimizer.lrr: unknown field 'lrr' (did you mean 'lr'?); one of type, lr, momentum, "
        "weight_decay"
    }
    # Seed 002's session config, inline: every unknown key is named with what it could have been, layers too.
    arch = {**MLP, "layers": [{"type": "linear", "in": 784, "out": 32, "bais": True}, *MLP["layers"][1:]]}
    session = await http.post("/api/v1/training/sessions", json={"config": {"architecture": arch,
                                                                             "hyperparams": {"epoch": 2}}})  # fmt: skip
    assert session.status_code == 400
    assert session.json()["error"]["details"] == [
        {"field": "config.architecture.layers[0].bais", "message": "unknown field 'bais'; one of type, in, out"},
        {"field": "config.hyperparams.epoch",
         "message": f"unknown field 'epoch' (did you mean 'epochs'?); one of {HYPERPARAMS}"},
    ]  # fmt: skip


async def test_a_field_validators_error_names_its_path_once(http: httpx.AsyncClient) -> None:
    """`layers` saying `layers[0]: ...` is at architecture.layers[0], not architecture.layers.layers[0]."""
    bad = {"input_size": 784, "layers": [{"type": "linear", "in": 784, "out": 10}, {"type": "gelu"}]}
    response = await http.post("/api/train", json={"architecture": bad, "hyperparams": hyperparams()})
    assert response.status_code == 400
    assert response.json()["error"] == (
        "architecture.layers[1]: unknown layer type 'gelu'; one of linear, conv2d, maxpool2d, flatten, dropout, relu, "
        "sigmoid, tanh, softmax"
    )
    session = await http.post("/api/v1/training/sessions", json={"config": {"architecture": bad}})
    assert [d["field"] for d in session.json()["error"]["details"]] == ["config.architecture.layers[1]"]
    # pydantic's tag for the layer's type is no part of the path the client sent: layers[0].out, not .linear.out.
    missing = {"input_size": 784, "layers": [{"type": "linear", "in": 784}]}
    assert (await http.post("/api/models", json={"architecture": missing})).json() == {
        "error": "architecture.layers[0].out: Field required"
    }
    # A model validator names its field itself, relative to its model: architecture.input_size, not doubled.
    shapeless = await http.post("/api/train", json={"architecture": {"layers": [{"type": "relu"}]}})
    assert shapeless.json()["error"].startswith("architecture.input_size: give input_size")
