"""The monitor's anomaly rule (rwm.export.anomaly): the window median (or mean), the hold, the
warm-up, and the threshold calibrated from validation errors."""

from __future__ import annotations

import numpy as np
import pytest

from rwm.export.anomaly import (
    AnomalyCalibration,
    AnomalyDetector,
    calibrate_threshold,
    check_rule_error,
    windowed,
    windowed_mean,
)


def test_windowed_mean_matches_a_plain_mean():
    x = np.random.default_rng(0).random((40, 3))
    w = windowed_mean(x, 7)
    assert w.shape == (34, 3)
    np.testing.assert_allclose(w[5], x[5:12].mean(0))


def test_calibration_is_the_margin_over_a_quantile_of_the_validation_windows():
    rng = np.random.default_rng(1)
    errors = rng.uniform(0.1, 0.2, (200, 5))
    errors[0] = np.nan  # no prediction yet
    for statistic in ("mean", "median"):
        cfg = AnomalyCalibration(
            window_steps=10, quantile=1.0, margin=1.5, warmup_steps=20, statistic=statistic
        )
        rule = calibrate_threshold([errors, errors[:50, :2]], cfg)
        windows = windowed(errors[21:], 10, statistic)  # row 0: no prediction; then 20 warm-up steps
        assert rule["validation_windows"] == 5 * 170 + 2 * 20 and rule["statistic"] == statistic
        assert rule["threshold"] == pytest.approx(1.5 * windows.max(), abs=1e-5)
    np.testing.assert_allclose(windowed(errors[21:], 10, "median")[3], np.median(errors[24:34], axis=0))
    with pytest.raises(ValueError, match="no validation window"):
        calibrate_threshold([errors[:25]], cfg)


def test_detector_raises_after_the_hold_and_clears_at_once():
    det = AnomalyDetector(threshold=0.5, window_steps=4, hold_steps=3, warmup_steps=2, n=2, statistic="mean")
    flags = []
    for t in range(20):
        error = np.array([0.1, 1.0 if t >= 8 else 0.1])
        if t >= 15:
            error[1] = 0.0
        flags.append(det.update(error).copy())
    flags = np.array(flags)
    assert not flags[:, 0].any(), "the robot that matches its model is never flagged"
    # robot 1: errors of 1.0 from step 8; the 4-step mean passes 0.5 at step 9 (0.1, 0.1, 1, 1 -> 0.55)
    raised = np.flatnonzero(flags[:, 1])
    assert raised[0] == 11, "above the threshold at steps 9, 10, 11: raised at the third"
    assert not flags[16:, 1].any(), "cleared when the window mean falls below"
    det.reset()
    assert not det.anomaly.any() and np.isnan(det.windowed).all()


def test_the_median_ignores_a_burst_a_sustained_shift_raises_it():
    """A few steps of large error (a command paired with a state a tick off) lift a window's mean over
    the threshold but not its median; a robot that errs at every step is flagged as soon."""
    rule = {"threshold": 1.0, "window_steps": 25, "hold_steps": 5, "warmup_steps": 0, "statistic": "median"}
    median = AnomalyDetector.from_rule(rule, n=2)
    mean = AnomalyDetector.from_rule({**rule, "statistic": "mean"}, n=2)
    flags_median, flags_mean = [], []
    for t in range(120):
        error = np.array([0.5, 0.5])
        if 60 <= t < 66:
            error[0] = 7.0  # robot 0: a burst of 6 steps
        if t >= 60:
            error[1] = 2.0  # robot 1: errs from step 60 on
        flags_median.append(median.update(error).copy())
        flags_mean.append(mean.update(error).copy())
    flags_median, flags_mean = np.array(flags_median), np.array(flags_mean)
    assert flags_mean[:, 0].any() and not flags_median[:, 0].any()
    # the median passes 1.0 once 13 of the 25 errors are 2.0 (step 72), then 5 steps held: 76
    assert np.flatnonzero(flags_median[:, 1])[0] == 76
    assert np.flatnonzero(flags_mean[:, 1])[0] == 72, "the mean passes 1.0 at 9 of 25 (step 68), held: 72"


@pytest.mark.parametrize("window", [24, 25])
@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_the_detector_judges_the_windows_the_calibration_saw(window, statistic):
    """Calibration (`windowed`) and the live detector must compute the same statistic, step by step."""
    errors = np.random.default_rng(window).gamma(2.0, 0.4, (200, 3))
    det = AnomalyDetector(1e9, window, 1, 0, n=3, statistic=statistic)
    live = []
    for row in errors:
        det.update(row)
        live.append(det.windowed.copy())
    np.testing.assert_allclose(np.array(live[window - 1 :]), windowed(errors, window, statistic), rtol=1e-12)
    assert np.isnan(live[window - 2]).all(), "nothing judged before the first full window"


def test_the_monitor_reads_each_models_rule_old_or_new():
    """A model exported before the median carries no `statistic` and keeps its mean; a model without a
    rule, run with a threshold set, gets today's window and statistic."""
    from rwm.control.world_model_monitor import MonitorConfig, anomaly_detector

    class Model:
        def __init__(self, rule):
            self.metadata = {"anomaly": rule} if rule else {}

    old = {"threshold": 1.8, "window_steps": 50, "hold_steps": 10, "warmup_steps": 32, "error": "mean_abs_z"}
    det = anomaly_detector(Model(old), MonitorConfig())
    assert (det.statistic, det.window, det.hold, det.threshold) == ("mean", 50, 10, 1.8)
    cfg = AnomalyCalibration(window_steps=25, statistic="median")
    new = calibrate_threshold([np.random.default_rng(2).uniform(0.1, 0.2, (100, 2))], cfg)
    det = anomaly_detector(Model(new), MonitorConfig(anomaly_steps=7))
    assert (det.statistic, det.window, det.hold) == ("median", 25, 7)
    det = anomaly_detector(Model(None), MonitorConfig(error_threshold=2.0))
    default = AnomalyCalibration()
    assert (det.statistic, det.window, det.threshold) == (default.statistic, default.window_steps, 2.0)


def test_rules_without_a_statistic_are_the_mean_and_unknown_ones_are_refused():
    rule = {"threshold": 0.5, "window_steps": 4, "hold_steps": 3, "warmup_steps": 2, "error": "mean_abs_z"}
    check_rule_error(rule)
    assert AnomalyDetector.from_rule(rule).statistic == "mean"
    with pytest.raises(ValueError, match="unknown window statistic"):
        check_rule_error({**rule, "statistic": "mode"})
    with pytest.raises(ValueError, match="window statistic must be"):
        AnomalyDetector(0.5, 4, 3, 2, statistic="mode")


def test_detector_ignores_the_warm_up_and_refuses_a_bad_rule():
    det = AnomalyDetector(threshold=0.5, window_steps=2, hold_steps=1, warmup_steps=5, statistic="median")
    for _ in range(5):
        assert not det.update(np.array([9.0]))[0], "warm-up steps are not scored"
    det.update(np.array([0.0]))
    assert not det.update(np.array([0.0]))[0]
    with pytest.raises(ValueError, match="positive threshold"):
        AnomalyDetector(threshold=0.0, window_steps=2, hold_steps=1, warmup_steps=0, statistic="mean")


def test_alarm_times_follow_the_detector_and_skip_fallen_robots():
    from rwm.evaluation.monitor_eval import alarm_times

    rule = {"threshold": 0.5, "window_steps": 4, "hold_steps": 3, "warmup_steps": 2}
    errors = np.full((30, 3), 0.1)
    errors[0] = np.nan
    errors[10:, 1] = 1.0
    errors[10:, 2] = 1.0
    errors[12:, 2] = np.nan  # fell before the rule could raise it
    times = alarm_times(errors, rule, 0.02)
    assert np.isnan(times[0]) and np.isnan(times[2])
    assert times[1] == pytest.approx(13 * 0.02), "above at steps 11, 12, 13 (mean of 4 passes 0.5 at 11)"


def test_first_moving_times_find_each_robots_first_moving_command():
    from rwm.evaluation.monitor_eval import first_moving_times

    moving = np.zeros((10, 3), dtype=bool)
    moving[:, 0] = True
    moving[4:, 1] = True
    times = first_moving_times(moving, 0.02)
    assert times[0] == 0.0 and times[1] == pytest.approx(0.08) and np.isnan(times[2])


def test_monitor_in_simulation_stays_silent_on_the_nominal_robot_and_flags_a_delay():
    from rwm.evaluation.monitor_eval import MonitorEvalConfig, evaluate_monitor
    from rwm.export.runtime import OnnxPolicy, OnnxWorldModel

    policy = OnnxPolicy("models/anymal_d_ppo.onnx")
    cfg = MonitorEvalConfig(robots=2, duration_s=4.0, seed=3)
    wm = OnnxWorldModel("models/anymal_d_rwm.onnx")
    result = evaluate_monitor(policy, policy.obs_dim, wm, ["nominal", "delay_20ms"], cfg)["variants"]
    assert result["nominal"]["alarmed"] == 0
    assert result["delay_20ms"]["alarmed_within_s"] == 2 and result["delay_20ms"]["fell"] == 0
    assert result["delay_20ms"]["alarmed_within_s_of_moving"] == 2


def test_monitor_in_simulation_through_the_control_loop_judges_what_the_loop_sends():
    """With the policy node's control loop driving (soft start, stand hold), the model is given the
    targets the loop sends, and the nominal robot stays unflagged through its handovers."""
    from rwm.control.policy_loop import Mode
    from rwm.control.safety import SafetyConfig
    from rwm.control.simulated import SimulatedControlLoops
    from rwm.evaluation.monitor_eval import MonitorEvalConfig, evaluate_monitor, one_step_errors
    from rwm.export.runtime import OnnxPolicy, OnnxWorldModel

    policy = OnnxPolicy("models/anymal_d_ppo.onnx")
    wm = OnnxWorldModel("models/anymal_d_rwmu.onnx")
    cfg = MonitorEvalConfig(robots=2, duration_s=8.0, seed=3, standing_fraction=0.5, warmup_steps=150)
    loops = SimulatedControlLoops(policy, policy.obs_dim, cfg.robots, SafetyConfig())
    modes: set[Mode] = set()

    def controller(state, command, t):
        targets = loops(state, command, t)
        modes.update(loop.mode for loop in loops.loops)
        return targets

    errors, _ = one_step_errors(policy, policy.obs_dim, wm, cfg, controller)
    assert {Mode.SOFT_START, Mode.POLICY} <= modes
    assert np.isfinite(errors[1:]).all()

    def new_controller():
        return SimulatedControlLoops(policy, policy.obs_dim, cfg.robots, SafetyConfig())

    result = evaluate_monitor(policy, policy.obs_dim, wm, ["nominal"], cfg, new_controller=new_controller)
    assert result["control_loop"] and result["warmup_steps"] == 150
    assert result["variants"]["nominal"]["alarmed"] == 0


def test_live_errors_are_set_against_the_offline_ones_of_their_step():
    from rwm.evaluation.monitor_eval import live_against_offline

    row_t = np.arange(200) * 0.02
    row_error = np.full(200, 0.5)
    live_t = row_t + 0.007  # logged 7 ms after the command's stamp
    live_error = row_error.copy()
    live_error[150] = 10.5  # the node scored one step against another state
    result = live_against_offline(live_t, live_error, row_t, row_error, window=50, judged_from_s=1.0)
    assert result["matched"] == 200 and result["abs_difference_max"] == pytest.approx(10.0)
    assert result["live_windowed_error_max"] == pytest.approx(0.5 + 10.0 / 50)
    late = live_against_offline(live_t + 100.0, live_error, row_t, row_error, 50, 1.0)  # after the rows ended
    assert late["matched"] == 0 and late["abs_difference_max"] is None


def test_robots_stand_first_then_get_their_sampled_command():
    """`stand_first_s`: the main job's standing start; the first sampled command comes after it."""
    from rwm.evaluation.monitor_eval import MonitorEvalConfig, one_step_errors
    from rwm.export.runtime import OnnxPolicy, OnnxWorldModel

    policy = OnnxPolicy("models/anymal_d_ppo.onnx")
    wm = OnnxWorldModel("models/anymal_d_rwmu.onnx")
    cfg = MonitorEvalConfig(robots=2, duration_s=1.0, seed=3, standing_fraction=0.0, stand_first_s=0.5)
    errors, moving = one_step_errors(policy, policy.obs_dim, wm, cfg)
    assert not moving[:25].any() and moving[25:].all()
    assert np.isfinite(errors[1:]).all()
