#!/bin/sh
# The ACLs of warmbee's Kafka principals on Apache Kafka (SASL/SCRAM users; README.md says how to make
# them). Run once by a cluster admin, and again for each new source system:
#
#   KAFKA_ACLS=/opt/kafka/bin/kafka-acls.sh BOOTSTRAP=kafka:9093 ADMIN_CONFIG=admin.properties \
#     sh deploy/kafka/acls.sh volunteer-platform grid-office training-school
#
# Each argument is a source system: its principal User:source-<name> may write activity-events and
# nothing else (no read, no other topic, no group, no create). With KAFKA_ACLS=echo it prints the
# commands instead (tests/deploy/test_kafka_security.py reads them so).
set -eu
: "${KAFKA_ACLS:=/opt/kafka/bin/kafka-acls.sh}"
: "${BOOTSTRAP:=localhost:9093}"
: "${ADMIN_CONFIG:=admin.properties}"
# The names the services use (libs/platform/settings.py defaults; change both together).
: "${TOPIC_EVENTS:=activity-events}"
: "${TOPIC_DLQ:=activity-events-dlq}"
: "${TOPIC_LEDGER:=points-ledger}"
: "${POINTS_GROUP:=warmbee-points}"
: "${NOTIFICATIONS_GROUP:=warmbee-notifications}"

acl() {  # acl PRINCIPAL OPERATION RESOURCE-KIND NAME
    "$KAFKA_ACLS" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" \
        --add --allow-principal "User:$1" --operation "$2" "--$3" "$4" --resource-pattern-type literal
}

# The events service's relay: what it accepted over HTTP, to activity-events (Write implies Describe,
# and on Kafka >= 2.8 the idempotent producer's IdempotentWrite).
acl warmbee-events Write topic "$TOPIC_EVENTS"
# The points worker and API: consume activity-events in their group; their relay writes dead letters
# and what the ledger did.
acl warmbee-points Read topic "$TOPIC_EVENTS"
acl warmbee-points Read group "$POINTS_GROUP"
acl warmbee-points Write topic "$TOPIC_DLQ"
acl warmbee-points Write topic "$TOPIC_LEDGER"
# The redemption service's relay: holds, confirmations, cancels and expiries, to points-ledger.
acl warmbee-redemption Write topic "$TOPIC_LEDGER"
# The notifications worker (faust, no internal topics): points-ledger in its group.
acl warmbee-notifications Read topic "$TOPIC_LEDGER"
acl warmbee-notifications Read group "$NOTIFICATIONS_GROUP"

# Source systems: activity-events only, write only. A source cannot read other sources' events, nor
# write points-ledger (which partners and webhooks trust).
for source in "$@"; do
    acl "source-$source" Write topic "$TOPIC_EVENTS"
done
