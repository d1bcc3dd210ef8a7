"""What runs on a Ray worker: the trainable that adapts a Tune trial to ser_core's training, and
the wire format of what it reports (search.worker.trainable), and its overhead clock."""
