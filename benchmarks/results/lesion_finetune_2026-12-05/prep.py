"""Preprocess the seed-13 dataset with the built-in model's own plans (its window, spacing and patch), so the
fine-tune sees the inputs the built-in model was trained on."""
import os, shutil
os.environ.update(nnUNet_raw='/tmp/s18/raw', nnUNet_preprocessed='/tmp/s18/pre', nnUNet_results='/tmp/s18/results',
                  nnUNet_compile='f')
if __name__ == '__main__':
    dst = '/tmp/s18/pre/Dataset599_MultiSpine'
    shutil.copy('/work/main/vertebraformer_nn/builtin_model/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres/plans.json',
                f'{dst}/VertebraFormerCPUPlans.json')
    shutil.rmtree(f'{dst}/VertebraFormerCPUPlans_3d_fullres', ignore_errors=True)
    if not os.path.isdir(f'{dst}/gt_segmentations'):
        shutil.copytree('/tmp/s18/raw/Dataset599_MultiSpine/labelsTr', f'{dst}/gt_segmentations')
    from vertebraformer_nn.planners.preprocessor import VertebraFormerPreprocessor
    VertebraFormerPreprocessor(verbose=False).run(599, '3d_fullres', 'VertebraFormerCPUPlans', num_processes=2)
    print('done', flush=True)
