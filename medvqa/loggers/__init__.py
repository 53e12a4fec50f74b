"""Logger classes where Lightning's need a medvqa default (conf/logger/ builds them)."""
