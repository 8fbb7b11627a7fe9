"""``vertebraformer demo``: the whole pipeline on built-in MultiSpine-Sim data in one command.

    from vertebraformer_nn.demo.config import DemoConfig
    from vertebraformer_nn.demo.pipeline import run_demo
    run_demo(DemoConfig(out=Path("demo_out"), cases_per_source=4, minutes=10, device="auto")) -> {step: StepRun}

Modules: config (what is asked for, where things go), pipeline (the steps, their reuse, progress; each step calls the
same Python functions as the command it stands for), markers (one marker file per finished step), timing (how the minutes are spent), reference (the unseen
style's evaluation reference from the phantoms' complete truth), report (REPORT.md), cli (the subcommand; it
imports the pipeline only when it runs, so ``vertebraformer --help`` imports neither torch nor nnU-Net).
"""
