import json

import numpy as np
import pytest
import torch

from videolake.pipeline.actions import ACTIONS, ActionEnsemble, ActionLSTM, ActionModel, pad_sequences
from videolake.pipeline.errors import ModelError
from videolake.pipeline.features import N_FEATURES
from videolake.pipeline.models import default_actions_path
from videolake.pipeline.synthetic import generate_features, generate_tracks
from videolake.pipeline.train import TrainConfig, evaluate, train_action_model


def test_lstm_maps_padded_sequences_of_any_length_to_class_logits():
    net = ActionLSTM(hidden_size=16)
    x, lengths = pad_sequences([np.ones((3, N_FEATURES)), np.ones((7, N_FEATURES)), np.ones((1, N_FEATURES))])
    assert x.shape == (3, 7, N_FEATURES) and lengths.tolist() == [3, 7, 1]
    assert net(x, lengths).shape == (3, len(ACTIONS))


def test_padding_does_not_change_a_sequence_s_prediction():
    net = ActionLSTM(hidden_size=16).eval()
    rng = np.random.default_rng(0)
    short = rng.normal(size=(4, N_FEATURES)).astype(np.float32)
    alone = net(*pad_sequences([short]))
    padded = net(*pad_sequences([short, rng.normal(size=(20, N_FEATURES))]))[:1]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-4)


def test_save_and_load_round_trip_through_safetensors(tmp_path):
    model = ActionModel(ActionLSTM(hidden_size=8, n_classes=3), ["sit", "stand", "wave"], {"note": "x"})
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = ActionModel.load(path)
    assert loaded.classes == ("sit", "stand", "wave") and loaded.metadata["note"] == "x"
    seqs = [np.random.default_rng(1).normal(size=(5, N_FEATURES)).astype(np.float32)]
    np.testing.assert_allclose(loaded.predict_proba(seqs), model.predict_proba(seqs), atol=1e-6)
    assert path.read_bytes()[:8] != b"\x80\x04\x95"[:8]  # not a pickle


def test_an_ensemble_answers_its_members_mean_probability_and_loads_back_as_one(tmp_path):
    torch.manual_seed(0)
    members = [ActionLSTM(hidden_size=8) for _ in range(3)]
    model = ActionModel(ActionEnsemble(members), ACTIONS)
    seqs = [np.random.default_rng(k).normal(size=(2 + k, N_FEATURES)).astype(np.float32) for k in range(4)]
    mean = np.mean([ActionModel(m, ACTIONS).predict_proba(seqs) for m in members], axis=0)
    np.testing.assert_allclose(model.predict_proba(seqs), mean, atol=1e-6)
    model.save(tmp_path / "e.safetensors")
    loaded = ActionModel.load(tmp_path / "e.safetensors")
    assert isinstance(loaded.net, ActionEnsemble) and len(loaded.net.members) == 3
    np.testing.assert_allclose(loaded.predict_proba(seqs), mean, atol=1e-6)


def test_training_members_gives_the_models_of_consecutive_seeds():
    train, val = generate_features(120, seed=5), generate_features(60, seed=6)
    config = TrainConfig(hidden_size=8, epochs=2, seed=4)
    ensemble = train_action_model(train, val, ACTIONS, TrainConfig(hidden_size=8, epochs=2, seed=4, members=2))
    alone = [train_action_model(train, val, ACTIONS, TrainConfig(hidden_size=8, epochs=2, seed=s)) for s in (4, 5)]
    assert isinstance(ensemble.net, ActionEnsemble) and isinstance(train_action_model(train, val, ACTIONS, config).net, ActionLSTM)
    for member, one in zip(ensemble.net.members, alone):
        for (name, a), b in zip(member.state_dict().items(), one.net.state_dict().values()):
            torch.testing.assert_close(a, b, msg=name)


def test_a_model_trained_on_other_features_is_refused_in_one_line_naming_them(tmp_path):
    from videolake.pipeline.features import FEATURE_NAMES

    older = list(FEATURE_NAMES[:-2])  # a model from before the net speed and camera motion features
    path = tmp_path / "old.safetensors"
    ActionModel(ActionLSTM(hidden_size=8, n_classes=2), ["a", "b"], {}).save(path, {"features": json.dumps(older)})
    with pytest.raises(ModelError) as refused:
        ActionModel.load(path)
    message = str(refused.value)
    assert "\n" not in message and f"trained on {len(older)} features" in message and "train-actions" in message
    assert f"new: {', '.join(sorted(FEATURE_NAMES[-2:]))}; gone: none" in message


@pytest.mark.parametrize("content", [b"", b"not safetensors at all", b"\x80\x04\x95pickle"])
def test_a_bad_weights_file_is_a_model_error(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="cannot load action model"):
        ActionModel.load(path)


def test_too_little_evidence_is_unknown_without_a_guess_and_a_low_top_probability_is_unknown_with_one():
    import torch

    torch.manual_seed(0)
    model = ActionModel(ActionLSTM(hidden_size=8, n_classes=len(ACTIONS)), ACTIONS)
    seqs = [np.zeros((6, N_FEATURES), np.float32)] * 2
    top = float(model.predict_proba(seqs[:1])[0].max())
    preds = model.classify(seqs, known=[False, True])
    assert preds[0].action == "unknown" and preds[0].confidence is None and preds[0].probs is None
    assert preds[1].action in ACTIONS and preds[1].confidence == pytest.approx(top, abs=1e-6)
    model.metadata["unknown_below"] = str(top + 0.01)  # the calibrated threshold travels in the weights' metadata
    abstained = model.classify(seqs[1:])[0]
    assert abstained.action == "unknown" and abstained.confidence is None and len(abstained.probs) == len(ACTIONS)


@pytest.mark.parametrize("top", ["falling", "lying", "running", "sitting", "walking", "standing"])
def test_a_body_the_frame_cuts_is_never_said_to_run_sit_lie_or_fall(top):
    import torch

    from videolake.pipeline.actions import WHOLE_BODY_ACTIONS

    model = ActionModel(ActionLSTM(hidden_size=8, n_classes=len(ACTIONS)), ACTIONS)
    with torch.no_grad():
        model.net.head[-1].bias.copy_(torch.tensor([4.0 if c == top else 0.0 for c in ACTIONS]))
    seqs = [np.zeros((6, N_FEATURES), np.float32)] * 2
    whole, cut = model.classify(seqs, known=[True, True], whole_body=[True, False])
    assert whole.action == top
    if top in WHOLE_BODY_ACTIONS:
        assert cut.action == "unknown" and cut.confidence is None and cut.probs == whole.probs  # the guess is kept, not said
    else:
        assert cut == whole


def test_the_default_model_knows_the_six_actions_and_abstains_below_its_calibrated_threshold():
    model = ActionModel.load(default_actions_path())
    assert model.classes == ACTIONS == ("standing", "walking", "running", "sitting", "lying", "falling")
    card = json.loads(default_actions_path().with_suffix(".json").read_text())
    assert model.unknown_below == pytest.approx(card["unknown_below"]) and 0 <= model.unknown_below < 1


def test_default_model_reaches_its_documented_held_out_accuracy_on_fresh_synthetic_data():
    card = json.loads(default_actions_path().with_suffix(".json").read_text())
    assert card["classes"] == list(ACTIONS)
    model = ActionModel.load(default_actions_path())
    sequences, labels = generate_features(1800, seed=424242)  # a seed the training never saw
    result = evaluate(model, sequences, labels)
    assert result.accuracy >= card["test_accuracy"] - 0.04
    assert min(m["recall"] for m in result.per_class.values()) >= 0.7


def test_synthetic_tracks_are_balanced_varied_and_carry_plausible_skeletons():
    from videolake.pipeline.features import skeleton_ok

    tracks = generate_tracks(120, seed=5)
    labels = [t.label for t in tracks]
    assert all(labels.count(i) == 20 for i in range(len(ACTIONS)))
    assert len({(t.frame_width, t.frame_height) for t in tracks}) >= 4
    rates = [1 / np.median(np.diff(t.t_s)) for t in tracks]
    assert min(rates) < 6 and max(rates) > 11
    upright = [t for t in tracks if ACTIONS[t.label] in ("standing", "walking")]
    assert np.mean([skeleton_ok(t.keypoints, t.pose_confidence).mean() for t in upright]) > 0.6
    lying = [t for t in tracks if ACTIONS[t.label] == "lying"]
    spans = [np.ptp(t.keypoints[0, [5, 6, 11, 12, 15, 16], 0]) / max(1.0, np.ptp(t.keypoints[0, [5, 6, 11, 12, 15, 16], 1]))
             for t in lying]
    assert np.median(spans) > 0.8  # lying bodies are mostly wider than tall in the image


def test_feature_dropout_hides_whole_features_of_a_clip_and_noise_scales_with_each_feature_s_spread():
    from videolake.pipeline.train import _perturbed

    net = ActionLSTM()
    net.feature_mean.copy_(torch.linspace(-1, 1, N_FEATURES))
    net.feature_std.copy_(torch.linspace(0.5, 2.0, N_FEATURES))
    x = torch.full((400, 6, N_FEATURES), 7.0)
    dropped = _perturbed(x, net, TrainConfig(feature_dropout=0.2), torch.Generator().manual_seed(0))
    hidden = dropped == net.feature_mean
    assert torch.equal(hidden.all(1), hidden.any(1))  # a feature is hidden for the whole clip or not at all
    assert 0.17 < hidden.all(1).float().mean() < 0.23
    assert torch.equal(dropped[~hidden], x[~hidden])
    noisy = _perturbed(x, net, TrainConfig(feature_noise=0.3), torch.Generator().manual_seed(0))
    spread = (noisy - x).reshape(-1, N_FEATURES).std(0)
    torch.testing.assert_close(spread, 0.3 * net.feature_std, rtol=0.1, atol=0.0)
    assert _perturbed(x, net, TrainConfig(), torch.Generator()) is x


def test_training_with_feature_dropout_and_noise_is_deterministic_for_a_seed_and_differs_from_without():
    train, val = generate_features(120, seed=5), generate_features(60, seed=6)
    robust = TrainConfig(hidden_size=8, epochs=2, seed=4, feature_dropout=0.1, feature_noise=0.2)
    first, again = (train_action_model(train, val, ACTIONS, robust) for _ in range(2))
    plain = train_action_model(train, val, ACTIONS, TrainConfig(hidden_size=8, epochs=2, seed=4))
    for (name, a), b, c in zip(first.net.state_dict().items(), again.net.state_dict().values(), plain.net.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert any(not torch.equal(a, c) for a, c in zip(first.net.state_dict().values(), plain.net.state_dict().values()))
