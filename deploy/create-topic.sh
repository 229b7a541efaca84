#!/usr/bin/env bash
# Create the event topic: the partition count bounds how many workers can share the
# projection; retention is infinite because the log is the source of truth (replay
# starts at offset 0). Idempotent: an existing topic is left as it is.
set -euo pipefail
BOOTSTRAP=${BOOTSTRAP:-localhost:9092}
TOPIC=${TOPIC:-deardiary.events}
PARTITIONS=${PARTITIONS:-8}
REPLICATION=${REPLICATION:-1}
KAFKA_BIN=${KAFKA_BIN:-/opt/kafka/bin}
"$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
  --topic "$TOPIC" --partitions "$PARTITIONS" --replication-factor "$REPLICATION" \
  --config retention.ms=-1 --config retention.bytes=-1 --config cleanup.policy=delete \
  --config message.timestamp.type=LogAppendTime
"$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --describe --topic "$TOPIC"
