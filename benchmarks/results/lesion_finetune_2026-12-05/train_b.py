"""Arm B: the same fine-tune with half of a lesion case's patches centred on a lesion voxel (LESION_PATCH_FRACTION
0.5 instead of 0.2), set in this process before the trainer is built."""
import sys
if __name__ == '__main__':
    import vertebraformer_nn.trainers.vertebraformer_trainer as vt
    vt.LESION_PATCH_FRACTION = 0.5
    from vertebraformer_nn.cli import main
    sys.exit(main(sys.argv[1:]))
