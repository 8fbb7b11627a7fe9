"""Fine-tune data: MultiSpine-Sim seed 13 (no evaluation or protocol seed), 24 cases per source, raw dataset 599,
CPU-preset plans (the model card's way to fine-tune the built-in model)."""
import os, time
os.environ.update(nnUNet_raw='/tmp/s18/raw', nnUNet_preprocessed='/tmp/s18/pre', nnUNet_results='/tmp/s18/results',
                  nnUNet_compile='f')
if __name__ == '__main__':
    from pathlib import Path
    from vertebraformer_nn.phantoms import generate
    from vertebraformer_nn.dataset_conversion import convert_source, finalize
    from vertebraformer_nn.sources import SOURCES
    from vertebraformer_nn.planners import plan_and_preprocess
    t = time.time()
    generate('/tmp/s18/sim', cases_per_source=24, seed=13, previews=False, progress=False)
    print('phantoms', time.time() - t, flush=True)
    for i, s in enumerate(SOURCES):
        r = convert_source(s, Path('/tmp/s18/sim') / s, 599, append=i > 0, progress=False)
        print(r.format(), flush=True)
    f = finalize(599, num_processes=2); print(f.format(), flush=True)
    print('converted', time.time() - t, flush=True)
    print(plan_and_preprocess(599, preset='cpu', configurations=('3d_fullres',), num_processes=2, verbose=False))
    print('planned', time.time() - t, flush=True)
