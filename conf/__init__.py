"""The Hydra configs (train.yaml, predict.yaml, evaluate.yaml ... and one folder per config group), shipped inside the
package: Hydra reads them as ``pkg://segsuite.conf``."""
