"""NSQ job queue: a Trio client built on pynsq's sans-IO `nsq.protocol`.

pynsq's Reader/Writer are Tornado-bound; this package uses only its command encoders
and frame decoding, and does the I/O, heartbeats, RDY, reconnects and lookupd
discovery itself (`connection`, `publisher`, `consumer`, `lookupd`).

    async with open_nsq_publisher(config) as publisher:
        await publisher.publish(job)

    async with open_nsq_consumer(config) as consumer:
        async for delivery in consumer:
            ...
            await delivery.ack()
"""

from cj.queue.nsq.consumer import NsqConsumer, open_nsq_consumer
from cj.queue.nsq.errors import NsqConfigError, NsqConnectionLost, NsqError, NsqProtocolError
from cj.queue.nsq.links import NsqDelivery
from cj.queue.nsq.publisher import NsqPublisher, open_nsq_publisher

__all__ = [
    "NsqConfigError",
    "NsqConnectionLost",
    "NsqConsumer",
    "NsqDelivery",
    "NsqError",
    "NsqProtocolError",
    "NsqPublisher",
    "open_nsq_consumer",
    "open_nsq_publisher",
]
