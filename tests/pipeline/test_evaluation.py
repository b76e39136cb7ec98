import numpy as np
import pytest

from videolake.pipeline.actions import ACTIONS, ActionLSTM, ActionModel
from videolake.pipeline.clips import Evidence
from videolake.pipeline.evaluation import NO_ACTION, predict_like_inference, score
from videolake.pipeline.features import N_FEATURES


def test_scores_count_abstentions_no_rows_absent_actions_and_boxes_that_are_not_people():
    truth = ["standing"] * 4 + ["walking"] * 4 + ["none"] * 2 + ["riding"]
    written = ["standing", "standing", "unknown", NO_ACTION,
               "walking", "standing", "running", "walking",
               NO_ACTION, "lying",
               "sitting"]
    report = score(ACTIONS, truth, written)
    assert report.classes == ("standing", "walking") and report.n_person_clips == 8
    assert report.accuracy_all == pytest.approx(4 / 8)
    assert report.accuracy_answered == pytest.approx(4 / 6)  # 6 answered: 2 + 1 right standing... and 2 walking
    assert report.unknown_rate == pytest.approx(1 / 8) and report.no_row_rate == pytest.approx(1 / 8)
    assert report.per_class["standing"] == {"precision": pytest.approx(2 / 3, abs=1e-4), "recall": 0.5, "support": 4}
    assert report.per_class["walking"] == {"precision": 1.0, "recall": 0.5, "support": 4}
    assert report.absent_actions == {"running": 1} and report.absent_action_rate == pytest.approx(1 / 8)
    assert (report.none_labels, report.none_given_action, report.none_given_unknown) == (2, 1, 0)
    assert dict(report.other_labels["riding"]) == {"sitting": 1}
    assert report.majority_class in ("standing", "walking") and report.majority_accuracy == 0.5
    assert report.confusion.tolist() == [[2, 0, 1, 1], [1, 2, 0, 0]]
    text = report.table()
    assert "unknown 12.5%" in text and "actions no label has: 12.5% of person clips (running 1)" in text


def test_labelled_clips_with_no_track_count_as_no_row_wrong_for_people_and_right_for_none():
    truth, written = ["standing", "walking", "none"], ["standing", "walking", NO_ACTION]
    report = score(ACTIONS, truth, written, missed=["walking", "walking", "none"])
    assert report.n_person_clips == 4 and report.accuracy_all == pytest.approx(2 / 4)
    assert report.no_row_rate == pytest.approx(2 / 4) and report.untracked == 2
    assert report.per_class["walking"] == {"precision": 1.0, "recall": pytest.approx(1 / 3, abs=1e-4), "support": 3}
    assert (report.none_labels, report.none_given_action) == (2, 0)
    assert "no row 50.0% (2 with no tracked box of their own)" in report.table()
    assert score(ACTIONS, truth, written).untracked == 0


def test_predictions_follow_the_evidence_rules_before_the_model():
    model = ActionModel(ActionLSTM(hidden_size=8, n_classes=len(ACTIONS)), ACTIONS)
    seqs = [np.zeros((5, N_FEATURES), np.float32)] * 3
    written = predict_like_inference(model, seqs, [Evidence.NOT_A_PERSON, Evidence.UNKNOWN, Evidence.ENOUGH])
    assert written[0] == NO_ACTION and written[1] == "unknown" and written[2] in ACTIONS
