"""The built-in recipe's fine-tune (demo --start builtin, 12 phantoms per source of seed 7, one fold) at another
CPU-preset spacing: the planner's CPU_SPACING_MM is set before planning (an experiment, not a product option).
Run it from outside the repository root, as run.sh does: there the root's folders would shadow the installed
package. The main guard is for nnU-Net's spawned workers."""
import sys

if __name__ == "__main__":
    spacing, out = float(sys.argv[1]), sys.argv[2]
    import vertebraformer_nn.planners.planner as planner
    planner.CPU_SPACING_MM = spacing
    from vertebraformer_nn.cli import main
    sys.exit(main(["demo", "-o", out, "--minutes", "40", "--cases-per-source", "12", "--max-folds", "1",
                   "--seed", "7", "--start", "builtin"]))
