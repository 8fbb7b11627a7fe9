import json, os, shutil
os.environ.update(nnUNet_raw='/tmp/ab/demo/nnUNet_raw', nnUNet_preprocessed='/tmp/s11/pre', nnUNet_results='/tmp/s11/results', nnUNet_compile='f')
if __name__ == '__main__':
    src = '/tmp/ab/demo/nnUNet_preprocessed/Dataset599_MultiSpine'
    dst = '/tmp/s11/pre/Dataset599_MultiSpine'
    for f in ('dataset.json', 'dataset_fingerprint.json', 'splits_final.json'):
        shutil.copy(f'{src}/{f}', f'{dst}/{f}')
    if not os.path.isdir(f'{dst}/gt_segmentations'):
        shutil.copytree(f'{src}/gt_segmentations', f'{dst}/gt_segmentations')
    p = json.load(open('/work/main/vertebraformer_nn/builtin_model/VertebraFormerTrainer_budget__VertebraFormerCPUPlans__3d_fullres/plans.json'))
    p['configurations']['3d_fullres']['architecture']['arch_kwargs']['use_boundary_head'] = True
    json.dump(p, open(f'{dst}/VertebraFormerCPUPlans.json', 'w'), indent=1)
    from vertebraformer_nn.planners.preprocessor import VertebraFormerPreprocessor
    VertebraFormerPreprocessor(verbose=False).run(599, '3d_fullres', 'VertebraFormerCPUPlans', num_processes=2)
    print('done')
