"""repro psec's summary and rule on figures made by hand (the run itself is the repro)."""

from __future__ import annotations

from skillbank.repro.psec import holds_rule, libero_finding, summary


def _sr(p):
    return {"success": p}


def _seed(lora, scratch, lora1, scratch1, comp, shift, forget):
    strategies = {k: {"acc": 0.5, "forgetting": f, "fwt": fwt, "nbt": 0.1, "auc": 0.4,
                      "bwt": -f} for k, (f, fwt) in forget.items()}
    return {"expansion": [{"lora": _sr(a), "scratch": _sr(b), "base": 0.0, "fraction": 0.045}
                          for a, b in zip(lora, scratch, strict=True)],
            "expansion_1demo": [{"lora": _sr(a), "scratch": _sr(b)}
                                for a, b in zip(lora1, scratch1, strict=True)],
            "composition": [comp], "shift": shift, "continual": {"strategies": strategies}}


COMP = {"base": 0.0, "new_lora": 0.5, "alpha": 0.2, "alpha_new": 0.7, "linear": 0.1,
        "task_arithmetic": 0.3, "ties": 0.6}
SHIFT = {"speed0.5": 0.4, "speed2.0": 0.3, "new_lora": 0.5, "alpha_new": 0.6}


def test_summary_means_over_tasks_and_seeds_and_the_rule_by_hand():
    forget = {"seq": (0.5, 0.6), "replay": (0.2, 0.5), "ewc": (0.25, 0.4), "expand": (0.0, 0.55)}
    per = [_seed([1.0, 1.0], [1.0, 1.0], [1.0, 0.8], [0.9, 0.4], COMP, SHIFT, forget),
           _seed([1.0, 0.9], [1.0, 1.0], [0.6, 1.0], [1.0, 0.5], {**COMP, "ties": 0.9},
                 {**SHIFT, "alpha_new": 0.2}, {**forget, "seq": (0.3, 0.7)})]
    s = summary(per)
    assert s["expansion"]["lora"] == 0.975 and s["expansion"]["scratch"] == 1.0
    assert s["expansion_1demo"] == {"lora": 0.85, "scratch": 0.7}
    assert s["composition"]["ties"] == 0.75 and s["composition"]["alpha_new"] == 0.7
    assert s["shift"]["alpha_new"] == 0.4
    assert s["continual"]["seq"]["forgetting"] == 0.4 and s["continual"]["seq"]["fwt"] == 0.65
    parts = holds_rule(s)
    # a tie or worse at 10 demos fails, 1 demo holds; α(s)+new 0.70 < TIES 0.75; shift 0.40 <
    # new LoRA 0.50; expand forgets 0 and seq 0.4 > 0
    assert parts == {"expansion": False, "expansion_1demo": True, "composition": False,
                     "shift": False, "continual": True}
    assert libero_finding(s)  # seq's FWT 0.65 is the best (expand 0.55)
    s["continual"]["expand"]["fwt"] = 0.7
    assert not libero_finding(s)
    s["continual"]["expand"]["forgetting"] = 0.01
    assert not holds_rule(s)["continual"]
