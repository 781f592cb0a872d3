"""The remote-write 1.0 message, ``prometheus.WriteRequest`` of Prometheus' prompb.

    WriteRequest { repeated TimeSeries timeseries = 1; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    Label        { string name = 1; string value = 2; }
    Sample       { double value = 1; int64 timestamp = 2; }  // milliseconds

The four messages are described here and built at import by Google's ``protobuf``
(no generated code to keep in step), in a descriptor pool of their own.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def _write_request_class() -> Any:
    """prompb's WriteRequest (with TimeSeries, Label, Sample), in a pool of its own."""
    field_proto = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="scenario_exporter/prompb.proto",
                                               package="prometheus", syntax="proto3")

    def repeated(name: str, number: int, message: str) -> descriptor_pb2.FieldDescriptorProto:
        return field_proto(name=name, number=number, label=field_proto.LABEL_REPEATED,
                           type=field_proto.TYPE_MESSAGE, type_name=".prometheus." + message)

    def scalar(name: str, number: int, kind: Any) -> descriptor_pb2.FieldDescriptorProto:
        return field_proto(name=name, number=number, label=field_proto.LABEL_OPTIONAL, type=kind)

    proto.message_type.add(name="WriteRequest", field=[repeated("timeseries", 1, "TimeSeries")])
    proto.message_type.add(name="TimeSeries", field=[repeated("labels", 1, "Label"),
                                                     repeated("samples", 2, "Sample")])
    proto.message_type.add(name="Label", field=[scalar("name", 1, field_proto.TYPE_STRING),
                                                scalar("value", 2, field_proto.TYPE_STRING)])
    proto.message_type.add(name="Sample", field=[scalar("value", 1, field_proto.TYPE_DOUBLE),
                                                 scalar("timestamp", 2, field_proto.TYPE_INT64)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))


WriteRequest: Any = _write_request_class()
