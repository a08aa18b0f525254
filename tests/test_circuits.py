import torch

from modicl.circuits import attention_scores, scores_from_patterns
from modicl.config import ModelConfig
from modicl.model import Transformer


def _pattern(T, back):
    """Every query attends fully to the token `back` positions earlier (to itself where none exists)."""
    pat = torch.zeros(1, 2, T, T)
    for t in range(T):
        pat[0, 0, t, max(t - back, 0)] = 1.0
        pat[0, 1, t, : t + 1] = 1.0 / (t + 1)  # a uniform head beside it
    return pat


def test_scores_of_hand_built_previous_token_and_two_back_heads():
    T = 3 * 6 - 1
    prev = scores_from_patterns([_pattern(T, 1)], n_var=2)
    assert prev["prev_token"] == [1.0] and prev["two_back"][0] < 0.2 and prev["z_tokens"][0] < 0.5
    # two back from a y position is the previous example's z token: all of the head's mass is on z tokens
    two = scores_from_patterns([_pattern(T, 2), _pattern(T, 1)], n_var=2)
    assert two["two_back"] == [1.0, two["two_back"][1]] and two["z_tokens"][0] == 1.0 and two["prev_token"][1] == 1.0


def test_an_untrained_model_attends_near_uniformly():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=32, n_layers=2, n_heads=2), 7, 48)
    s = attention_scores(model, torch.randint(7, (8, 48)), n_var=2)
    # uniform attention over the prefix gives the mean of 1/(q+1) over y positions q = 4, 7, …, 46
    uniform = sum(1 / (q + 1) for q in range(4, 47, 3)) / len(range(4, 47, 3))
    assert all(abs(v - uniform) < 0.01 for v in s["prev_token"] + s["two_back"])
    assert model.training


def test_attention_progress_plot_draws_the_logged_measures_and_skips_older_runs(tmp_path):
    from modicl.report.figures import attention_progress_plot

    rows = [
        {
            "step": s,
            "id_train": {"loss": 2.0 - s / 1000},
            "attention": {
                "prev_token": [0.1 + s / 2000, 0.1],
                "two_back": [0.1, 0.1],
                "z_tokens": [0.3, 0.3 + s / 2000],
            },
        }
        for s in (0, 500, 1000)
    ]
    assert attention_progress_plot(rows, tmp_path / "a.png", best_step=500)
    assert (tmp_path / "a.png").stat().st_size > 10_000
    assert not attention_progress_plot([{"step": 0}], tmp_path / "b.png") and not (tmp_path / "b.png").exists()


def test_a_one_example_context_has_no_scores():
    assert scores_from_patterns([_pattern(2, 1)], n_var=2) is None
