"""Recording and replay: MCAP files with the protobuf schemas embedded (Foxglove, any MCAP reader)."""
