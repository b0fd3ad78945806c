"""Each stage's one line in ``natal run``: the figures named in it come from its stats."""

from cluster.headlines import HEADLINES, headline
from cluster.stages import STAGES


def test_every_lifecycle_stage_has_its_own_headline():
    assert [s.name for s in STAGES if s.name not in HEADLINES] == []


def test_data_stages_name_their_counts_and_top_reasons():
    filtered = {
        "counts": {"documents_in": 600, "kept": 180, "removed": 420},
        "breakdown": {
            "removed_by_reason": {"lang": 15, "gopher_rep": 204, "c4_short": 65, "x": 38}
        },
    }
    assert headline("filter", filtered) == (
        "kept 180 / removed 420; top reasons: gopher_rep 204, c4_short 65, x 38"
    )
    dedup = {"counts": {"exact_duplicates": 16, "fuzzy_duplicates": 4, "clusters": 13, "kept": 160}}
    assert headline("dedup", dedup) == (
        "16 exact + 4 fuzzy duplicates removed in 13 clusters; kept 160"
    )
    crawl = {"counts": {"pages": 600, "bytes": 18_454_812, "retries": 0}, "pages_per_second": 31.9}
    assert headline("crawl", crawl) == "600 pages (18.5 MB) at 31.9 pages/s, 0 retries"


def test_training_stages_show_the_held_out_figure_before_and_after():
    sft = {"steps": 30, "val_loss_before": 5.25, "val_loss": 3.5, "final_loss": 2.0}
    assert headline("sft", sft) == "val loss 5.25 → 3.5 (train 2) after 30 steps"
    reward = {"counts": {"val_pairs": 40}, "val_accuracy_before": 0.5, "val_accuracy": 0.875}
    assert "held-out accuracy 0.5 → 0.875 on 40 pairs" in headline("reward", reward)
    pretrain = {"counts": {"tokens": 1_228_800}, "tokens_per_s": 8308.2, "mfu": 0.48847}
    line = headline("pretrain", {**pretrain, "val_ppl_before": 4100.0, "val_ppl": 325.27})
    assert "1,228,800 tokens at 8,308 tokens/s, MFU 48.8%" in line
    assert "val perplexity 4,100 → 325" in line


def test_eval_names_each_judge_and_says_plainly_when_rlhf_did_not_clearly_beat_sft():
    def judge(name, rate, interval, independent=True):
        return {
            "name": name,
            "independent": independent,
            "win_rate": rate,
            "win_rate_ci95": interval,
        }

    trained = judge("training_reward", 1.0, "1.00–1.00", independent=False)
    stats = {"counts": {"prompts": 16}, "judges": [trained, judge("judge_rule", 0.81, "0.62–0.97")]}
    line = headline("eval", stats)
    assert line == (
        "16 held-out prompts, RLHF vs SFT win rate (95% CI) by training_reward (not "
        "independent) 1 (1.00–1.00), judge_rule 0.81 (0.62–0.97)"
    )  # the interval is above 0.5: nothing to warn about
    noise = {**stats, "judges": [trained, judge("judge_rule", 0.56, "0.31–0.78")]}
    assert "RLHF is not distinguishable from SFT by judge_rule" in headline("eval", noise)
    worse = {**stats, "judges": [trained, judge("judge_rule", 0.2, "0.05–0.41")]}
    assert "RLHF lost to SFT on held-out prompts by every independent judge" in headline(
        "eval", worse
    )
    split = {**stats, "judges": [judge("judge_model", 0.94, "0.81–1.00"), worse["judges"][1]]}
    assert "disagree: judge_model prefers RLHF, judge_rule prefers SFT" in headline("eval", split)
    mixed = {**stats, "judges": [split["judges"][0], noise["judges"][1]]}
    assert "judge_model prefers RLHF, but judge_rule cannot tell it from SFT" in headline(
        "eval", mixed
    )
    alone = {**stats, "judges": [trained]}
    assert "no independent judge" in headline("eval", alone)


def test_a_missing_figure_shows_as_unknown_not_a_crash():
    assert "? pages" in headline("crawl", {})
    assert headline("custom", {"counts": {"rows": 3}}) == "rows 3"
