"""The wire contract (protobuf package ``voxrelay.v1``): generated modules, imported by edge and cloud.

The ``.proto`` sources live in ``protos/voxrelay/v1/``; ``scripts/gen_protos.py`` regenerates these
modules. Everything outside the wire code works with plain dataclasses, not these messages.
"""

from . import admin_pb2 as admin_pb
from . import admin_pb2_grpc as admin_grpc
from . import recognizer_pb2 as pb
from . import recognizer_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recognizer"].full_name
ADMIN_SERVICE_NAME = admin_pb.DESCRIPTOR.services_by_name["Admin"].full_name

__all__ = ["ADMIN_SERVICE_NAME", "SERVICE_NAME", "admin_grpc", "admin_pb", "pb", "pb_grpc"]
