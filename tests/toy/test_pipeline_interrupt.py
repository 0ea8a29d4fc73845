"""Ctrl-C during a step of tools/run_freemask_pipeline.py: one line naming the step, its log and how to go on."""

import os

from freemask import cli
from freemask.toy import pipeline
from freemask.toy.pipeline import PipelineOptions, run_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ctrl_c_during_a_step_is_one_line_and_the_step_resumes_on_the_next_run(tmp_path, monkeypatch, capsys):
    options = PipelineOptions(working_dir=REPO, output_root=str(tmp_path / "out"), datasets_root=str(tmp_path / "data"))
    data = next(step for step in pipeline.plan_steps(options) if step.name == "data")
    for output in data.outputs:  # the data step is done: the first step run is "real"
        os.makedirs(output)

    def ctrl_c(*args, **kwargs):  # the step got it too and stopped; forked_script re-raises it here once it ended
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_script", ctrl_c)
    assert cli.run(run_pipeline, options, lambda line: None) == 130
    log = tmp_path / "out" / "steps" / "real.log"
    assert capsys.readouterr().err == (
        f"interrupted (Ctrl-C) during step real (its log: {log}); finished steps are kept: run the same command "
        "again to skip them and continue real\n"
    )
    real = next(step for step in pipeline.plan_steps(options) if step.name == "real")
    assert pipeline._decide(options, real, set()) == "resume"  # the next run continues it (train_net.py --resume)
