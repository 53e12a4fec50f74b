"""Training controls as Lightning callbacks and plugins, each switched on by a config in conf/callbacks/
(or conf/precision/, conf/trainer/); see docs/training_controls.md."""
