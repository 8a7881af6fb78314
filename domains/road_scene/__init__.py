"""Road-scene domain (Cityscapes, CamVid, KITTI road, generic folders): labels, datasets, synthetic data, metrics,
the reader (``reader.ImageReader``), writer (``writer.SceneWriter``) and evaluation (``scorers.RoadSceneEvaluation``)
of the core pipeline, and a throughput benchmark (configs: ``conf/domain/{road_scene,cityscapes,camvid,kitti_road}``).
"""
