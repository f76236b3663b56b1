"""Publishing events from the commits table's DynamoDB stream instead of polling the outbox.

One code path turns a stream record into event envelopes (`cqrs_shared.dynamo_stream`, which the
serverless projection uses too); two runners here publish them: the
long-running `stream_publisher` (Kubernetes and local use; shards shared between replicas through
leases, checkpoints in DynamoDB) and `lambda_handler` (AWS Lambda with MSK). Chosen with
`COMMAND_SVC_EVENT_PUBLISHER=dynamodb-stream` (the outbox relay is the default).
"""

__all__ = ["lambda_handler", "stream_publisher"]
