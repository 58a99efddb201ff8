"""The reward adapters: the VERL entry loaded by VERL's own loader, and the TRL reward functions.

The shared fake server (tests/fake_openai.py) plays the judge (always rating 4),
so the judge path is exercised for real; a port with nothing listening plays
the judge that is down.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path

import numpy as np
import pytest
from fake_openai import FakeOpenAIServer, completion

from deepicd.rewards import verl_entry
from deepicd.rewards.config import load_reward_config
from deepicd.rewards.scorer import RewardScorer
from deepicd.rewards.trl_entry import JudgeReward, RuleReward, completion_text, reward_functions
from deepicd.serving import free_port

EXACT = " Low back pain radiating to the leg.</think>\n<diagnosis>M51.16</diagnosis>"
PARTIAL = " Disc disorder.</think>\n<diagnosis>M5126</diagnosis>"
NO_PAIR = "I am not sure."
RULE_KEYS = ["score", "acc", "valid", "outcome", "format", "extra_pairs", "empty", "reward_error"]


@pytest.fixture()
def rating_server():
    """The shared fake server as a judge that rates every reasoning 4."""
    with FakeOpenAIServer(lambda path, body: completion(body, ['{"score": 4}']), ["fake-judge"]) as server:
        yield server


def compose_with_reward(preset: str, overrides: list[str]):
    """VERL's own `ppo_trainer` config composed with our reward wiring, as the training command writes it."""
    import verl
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from deepicd.train.grpo_verl import hydra_value

    config_dir = Path(verl.__file__).resolve().parent / "trainer" / "config"
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            return compose(config_name="ppo_trainer", overrides=[
                f"reward.custom_reward_function.path={Path(verl_entry.__file__).resolve()}",
                "reward.custom_reward_function.name=compute_score",
                f"+reward.custom_reward_function.reward_kwargs.preset={preset}",
                f"+reward.custom_reward_function.reward_kwargs.overrides={hydra_value(overrides)}",
            ])
    finally:
        GlobalHydra.instance().clear()


def verl_loaded(preset: str, overrides: list[str]):
    """The reward function exactly as VERL 0.9 loads it: by file path, wrapped with the reward kwargs."""
    from verl.trainer.ppo.reward import get_custom_reward_fn

    fn = get_custom_reward_fn(compose_with_reward(preset, overrides))
    assert fn is not None
    return fn


def call(fn, **kwargs):
    result = fn(**kwargs)
    return asyncio.run(result) if inspect.isawaitable(result) else result


def test_verl_loads_the_entry_by_path_and_awaits_it():
    fn = verl_loaded("paper", [])
    assert inspect.iscoroutinefunction(fn)  # VERL's managers await coroutine functions
    # The file is imported under VERL's own module name, not as deepicd.rewards.verl_entry.
    assert fn.args[0].__module__ != "deepicd.rewards.verl_entry"


@pytest.mark.parametrize("gold", [["M5116"], np.array(["M5116"], dtype=object), "M5116", ("M51.16",)],
                         ids=["list", "numpy", "string", "dotted-tuple"])
def test_verl_entry_scores_every_gold_shape_the_same(gold):
    fn = verl_loaded("paper", [])
    result = call(fn, data_source="mimic-iv", solution_str=EXACT, ground_truth=gold, extra_info={"note": "n"})
    assert list(result) == RULE_KEYS
    assert result == {"score": 76.0, "acc": 1.0, "valid": 1.0, "outcome": 75.0, "format": 1.0,
                      "extra_pairs": 0.0, "empty": 0.0, "reward_error": 0.0}
    assert all(type(value) is float for value in result.values())


def test_verl_entry_ignores_data_source_and_keeps_its_keys_for_every_answer():
    fn = verl_loaded("paper", [])
    rows = [call(fn, data_source=source, solution_str=text, ground_truth=["M5116"], extra_info=None)
            for source in ("mimic-iv", "something-else", None) for text in (EXACT, PARTIAL, NO_PAIR, "")]
    assert all(list(row) == RULE_KEYS for row in rows)
    assert [row["score"] for row in rows[:4]] == [76.0, 25.0, -1.0, -6.0]
    assert rows[:4] == rows[4:8] == rows[8:]
    assert [row["acc"] for row in rows[:4]] == [1.0, 0.0, 0.0, 0.0]


def test_verl_entry_passes_preset_overrides_through_reward_kwargs():
    fn = verl_loaded("paper", ["outcome.match=10", "components=[outcome]"])
    result = call(fn, data_source="x", solution_str=EXACT, ground_truth=["M5116"], extra_info={})
    assert result == {"score": 50.0, "acc": 1.0, "valid": 1.0, "outcome": 50.0, "reward_error": 0.0}


def test_verl_entry_with_the_judge_returns_judge_stats(rating_server):
    fn = verl_loaded("judge-greedy", [f"judge.url={rating_server.url}", "judge.model=fake-judge"])
    rated = call(fn, data_source="x", solution_str=EXACT, ground_truth=["M5116"], extra_info={"note": "Back pain."})
    skipped = call(fn, data_source="x", solution_str=NO_PAIR, ground_truth=["M5116"], extra_info={"note": "Back pain."})
    keys = RULE_KEYS[:-1] + ["judge", "judge_rating", "judge_asked", "judge_fallback", "reward_error"]
    assert list(rated) == keys and list(skipped) == keys
    assert rated["judge"] == pytest.approx(3.2) and rated["score"] == pytest.approx(79.2)
    assert (rated["judge_rating"], rated["judge_asked"], rated["judge_fallback"]) == (4.0, 1.0, 0.0)
    assert skipped["judge"] == pytest.approx(-0.8) and skipped["judge_asked"] == 0.0
    assert rating_server.requests == 1  # no pair: the judge is not asked
    assert all(type(value) is float for value in rated.values())


def test_verl_entry_falls_back_within_the_timeout_when_no_judge_is_up():
    url = f"http://127.0.0.1:{free_port()}/v1"
    fn = verl_loaded("judge-greedy", [f"judge.url={url}", "judge.model=fake-judge", "judge.timeout_s=0.5",
                                     "judge.retries=1", "judge.backoff_s=0.1", "judge.batch_deadline_s=2"])
    started = time.monotonic()
    result = call(fn, data_source="x", solution_str=EXACT, ground_truth=["M5116"], extra_info={"note": "Back pain."})
    assert time.monotonic() - started < 5.0
    assert result["judge_fallback"] == 1.0 and result["judge"] == 0.0  # the preset's fallback_value
    assert result["score"] == 76.0 and result["acc"] == 1.0


def test_verl_entry_without_a_note_scores_the_rules_and_flags_the_error():
    """VERL's rate-limited manager scores a raising reward 0.0: more than a wrong answer. Never raise."""
    fn = verl_loaded("paper-judge", [f"judge.url=http://127.0.0.1:{free_port()}/v1"])
    result = call(fn, data_source="x", solution_str=EXACT, ground_truth=["M5116"], extra_info={"index": 0})
    keys = RULE_KEYS[:-1] + ["judge", "judge_rating", "judge_asked", "judge_fallback", "reward_error"]
    assert list(result) == keys
    assert result["reward_error"] == 1.0 and result["judge_fallback"] == 1.0 and result["judge"] == 0.0
    assert result["score"] == 76.0


def test_verl_entry_never_raises_on_an_unreadable_gold_and_scores_below_any_answer():
    fn = verl_loaded("paper-judge", [f"judge.url=http://127.0.0.1:{free_port()}/v1"])
    result = call(fn, data_source="x", solution_str=EXACT, ground_truth=None, extra_info={"note": "n"})
    assert result["reward_error"] == 1.0 and result["score"] == -1.0


def test_verl_entry_gives_up_on_a_stalled_judge_before_verls_timeout(monkeypatch):
    """A judge that never answers: compute_score returns the fallback within its own deadline."""
    import asyncio

    from deepicd.rewards import verl_entry

    monkeypatch.setattr(verl_entry, "DEADLINE_GRACE_S", 0.2)
    scorer = verl_entry.get_scorer("judge-greedy", ["judge.batch_deadline_s=0.3", "judge.model=j"])

    async def stall(requests):
        await asyncio.sleep(60)

    monkeypatch.setattr(scorer.judge, "rate_many", stall)
    started = time.monotonic()
    result = asyncio.run(verl_entry.compute_score("x", EXACT, ["M5116"], {"note": "n"}, preset="judge-greedy",
                                                  overrides=["judge.batch_deadline_s=0.3", "judge.model=j"]))
    assert time.monotonic() - started < 5
    assert result["reward_error"] == 1.0 and result["judge_fallback"] == 1.0 and result["score"] == 76.0


def test_verl_timeout_must_outlast_the_judge_deadline():
    from deepicd.rewards.verl_entry import DEADLINE_GRACE_S, check_timeout

    assert check_timeout(900, 300) == ""
    assert "verl.reward_timeout_s" in check_timeout(300, 300)
    assert check_timeout(300 + DEADLINE_GRACE_S, 300) != ""


def test_trl_functions_are_one_per_component_named_for_trls_logs():
    from trl.trainer.utils import get_callable_name, is_async_callable

    config = load_reward_config("paper-judge")
    functions = reward_functions(config)
    assert [get_callable_name(f) for f in functions] == config.components
    assert [is_async_callable(f) for f in functions] == [False, False, False, False, True]
    assert all(f.__doc__ for f in functions)


def test_trl_rule_functions_return_the_scorers_terms_for_text_and_chat_completions():
    config = load_reward_config("paper")
    functions = reward_functions(config)
    texts = [EXACT, PARTIAL, NO_PAIR, "", EXACT + "\n<think>x</think><diagnosis>I10</diagnosis>"]
    golds = ["M5116", ["M5116"], "M5116", "M5116", "M5116"]
    chats = [[{"role": "assistant", "content": text}] for text in texts]
    metrics: dict[str, list[float]] = {}
    columns = dict(gold=golds, note=["n"] * 5, hadm_id=list(range(5)),
                   log_metric=lambda name, value: metrics.setdefault(name, []).append(value))
    scorer = RewardScorer(config)
    expected = [scorer.score_rules(text, gold) for text, gold in zip(texts, golds)]
    for completions in (texts, chats):
        for function in functions:
            values = function(prompts=["p"] * 5, completions=completions, completion_ids=[[1]] * 5, **columns)
            assert values == [result.terms[function.__name__] for result in expected]
    totals = [sum(f(prompts=["p"] * 5, completions=texts, **columns)[i] for f in functions) for i in range(5)]
    assert totals == [r.total for r in expected] == [76.0, 25.0, -1.0, -6.0, 75.0]
    assert metrics["reward_acc"][0] == pytest.approx(2 / 5)


def test_trl_rule_functions_need_the_gold_column():
    function = reward_functions(load_reward_config("paper"))[0]
    with pytest.raises(KeyError, match="'gold'"):
        function(prompts=["p"], completions=[EXACT], completion_ids=[[1]], first_code=["M5116"])


def test_trl_judge_function_is_async_and_rates_through_the_server(rating_server):
    config = load_reward_config("judge-greedy", [f"judge.url={rating_server.url}", "judge.model=fake-judge"])
    judge = [f for f in reward_functions(config) if isinstance(f, JudgeReward)][0]
    logged: dict[str, float] = {}
    values = asyncio.run(judge(prompts=["p"] * 3, completions=[EXACT, NO_PAIR, [{"role": "assistant", "content": PARTIAL}]],
                               completion_ids=[[1]] * 3, gold=["M5116"] * 3, note=["Back pain."] * 3,
                               log_metric=logged.__setitem__))
    assert values == pytest.approx([3.2, -0.8, 3.2])
    assert rating_server.requests == 2
    assert logged["judge_rating"] == 4.0 and logged["judge_asked"] == pytest.approx(2 / 3)


def test_completion_text_reads_strings_messages_and_content_parts():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "ab"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "image"}]}]) == "x"
    with pytest.raises(TypeError):
        completion_text(42)


def test_rule_reward_is_picklable_free_of_lambdas():
    # TRL may deep-copy or pickle its reward functions; ours are plain class instances.
    import pickle

    function = reward_functions(load_reward_config("paper"))[0]
    assert isinstance(function, RuleReward)
    clone = pickle.loads(pickle.dumps(function))
    assert clone(prompts=["p"], completions=[EXACT], gold=["M5116"]) == [75.0]
