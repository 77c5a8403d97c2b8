"""The stack's resources in dependency order (``up`` walks it forward, ``down`` backward).

The bucket comes first: a bucket name owned by another account stops the run
before anything else is written.
"""

from __future__ import annotations

from provision import network
from provision.bucket import Bucket
from provision.documents import Document
from provision.engine import Engine, Resource
from provision.iam import InstanceRole, SchedulerRole
from provision.instance import ElasticIp, Instance
from provision.keypair import KeyPair
from provision.lambdas import Function
from provision.notifications import Topic
from provision.schedule import Rule
from provision.sessions import SessionSchedules, SessionsRole


def resources() -> list[Resource]:
    return [
        Bucket(),
        *network.RESOURCES,
        KeyPair(),
        Topic(),
        InstanceRole(),
        Instance(),
        ElasticIp(),
        Document("sync"),
        Document("eod"),
        SchedulerRole(),
        Function("start"),
        Function("stop"),
        Rule("start"),
        Rule("stop"),
        SessionsRole(),
        SessionSchedules(),
    ]


def engine() -> Engine:
    return Engine(resources())
