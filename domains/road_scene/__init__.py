"""Road-scene domain (Cityscapes, CamVid, KITTI road, generic folders): labels, datasets, synthetic data, metrics, IO.

Hydra builder: ``domains.road_scene.datasets.build_datasets``.
"""
