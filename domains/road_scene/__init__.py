"""Road-scene domain (Cityscapes, CamVid, KITTI road, generic folders): labels, datasets, synthetic data, metrics, IO,
prediction, evaluation and a throughput benchmark.

Hydra targets: ``domains.road_scene.datasets.build_datasets``, ``domains.road_scene.predict.predict``,
``domains.road_scene.evaluate.evaluate`` (configs: ``conf/domain/{road_scene,cityscapes,camvid,kitti_road}.yaml``).
"""
