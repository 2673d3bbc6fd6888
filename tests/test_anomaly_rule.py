"""The monitor's anomaly rule (rwm.export.anomaly): the window mean, the hold, the warm-up, and the
threshold calibrated from validation errors."""

from __future__ import annotations

import numpy as np
import pytest

from rwm.export.anomaly import AnomalyCalibration, AnomalyDetector, calibrate_threshold, windowed_mean


def test_windowed_mean_matches_a_plain_mean():
    x = np.random.default_rng(0).random((40, 3))
    w = windowed_mean(x, 7)
    assert w.shape == (34, 3)
    np.testing.assert_allclose(w[5], x[5:12].mean(0))


def test_calibration_is_the_margin_over_a_quantile_of_the_validation_windows():
    rng = np.random.default_rng(1)
    errors = rng.uniform(0.1, 0.2, (200, 5))
    errors[0] = np.nan  # no prediction yet
    cfg = AnomalyCalibration(window_steps=10, quantile=1.0, margin=1.5, warmup_steps=20)
    rule = calibrate_threshold([errors, errors[:50, :2]], cfg)
    windows = windowed_mean(errors[21:], 10)  # row 0: no prediction; then 20 warm-up steps
    assert rule["validation_windows"] == 5 * 170 + 2 * 20
    assert rule["threshold"] == pytest.approx(1.5 * windows.max(), abs=1e-5)
    with pytest.raises(ValueError, match="no validation window"):
        calibrate_threshold([errors[:25]], cfg)


def test_detector_raises_after_the_hold_and_clears_at_once():
    det = AnomalyDetector(threshold=0.5, window_steps=4, hold_steps=3, warmup_steps=2, n=2)
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


def test_detector_ignores_the_warm_up_and_refuses_a_bad_rule():
    det = AnomalyDetector(threshold=0.5, window_steps=2, hold_steps=1, warmup_steps=5)
    for _ in range(5):
        assert not det.update(np.array([9.0]))[0], "warm-up steps are not scored"
    det.update(np.array([0.0]))
    assert not det.update(np.array([0.0]))[0]
    with pytest.raises(ValueError, match="positive threshold"):
        AnomalyDetector(threshold=0.0, window_steps=2, hold_steps=1, warmup_steps=0)


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
