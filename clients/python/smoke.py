"""A short Python client of the numbering API, run by CI against a live server.

Stubs first (from the repository root):

    python3 -m grpc_tools.protoc -I client/proto --python_out=GEN --grpc_python_out=GEN \
        client/proto/numbering/v1/*.proto

then `PYTHONPATH=GEN python3 clients/python/smoke.py [ADDRESS]` (default 127.0.0.1:50051;
NUMBERING_TOKEN adds a bearer token). Needs grpcio, grpcio-status and grpcio-health-checking;
google.rpc.status comes with googleapis-common-protos (a dependency of grpcio-status).
"""

import os
import sys
import time
import uuid

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from numbering.v1 import allocation_pb2, allocation_pb2_grpc
from numbering.v1 import number_pool_pb2, number_pool_pb2_grpc
from numbering.v1 import tenancy_pb2, tenancy_pb2_grpc


def main() -> int:
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    channel = grpc.insecure_channel(address)
    token = os.environ.get("NUMBERING_TOKEN")
    metadata = [("authorization", f"Bearer {token}")] if token else []

    # Health: wait for SERVING (the server migrates its database first).
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 60
    while True:
        try:
            # The services report SERVING once the schema is ready (the empty name is liveness only).
            request = health_pb2.HealthCheckRequest(service="numbering.v1.TenancyService")
            status = health.Check(request, timeout=2).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            print("the server never became SERVING", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print("health: SERVING")

    tenancy = tenancy_pb2_grpc.TenancyServiceStub(channel)
    pool = number_pool_pb2_grpc.NumberPoolServiceStub(channel)
    allocation = allocation_pb2_grpc.AllocationServiceStub(channel)

    def create(parent_id: str, name: str):
        return tenancy.CreateAccount(
            tenancy_pb2.CreateAccountRequest(
                account=tenancy_pb2.Account(parent_id=parent_id, display_name=name),
                request_id=str(uuid.uuid4()),
            ),
            metadata=metadata,
        )

    provider = create("", "Python Telecom")
    customer = create(provider.id, "Python Customer")
    print(f"created provider {provider.id} and customer {customer.id}")

    # Import: the options, then the CSV; the answers stream progress, then the result.
    csv = b"e164,carrier\n+13035550100,Acme\n+13035550101,Acme\nnot a number,Acme\n"
    parts = [
        number_pool_pb2.ImportNumbersRequest(
            options=number_pool_pb2.ImportOptions(
                owner_id=provider.id,
                mode=number_pool_pb2.IMPORT_MODE_BEST_EFFORT,
                request_id=str(uuid.uuid4()),
            )
        ),
        number_pool_pb2.ImportNumbersRequest(chunk=csv),
    ]
    result = None
    for answer in pool.ImportNumbers(iter(parts), metadata=metadata):
        if answer.HasField("result"):
            result = answer.result
    assert result is not None, "the import answered no result"
    assert (result.rows_imported, result.rows_rejected) == (2, 1), result
    print(f"imported {result.rows_imported}, rejected {result.rows_rejected}")

    def allocate(count: int):
        return allocation.AllocateNumbers(
            allocation_pb2.AllocateNumbersRequest(
                from_account_id=provider.id,
                to_account_id=customer.id,
                selection=allocation_pb2.NumberSelection(
                    quantity=allocation_pb2.QuantitySelection(count=count)
                ),
                request_id=str(uuid.uuid4()),
            ),
            metadata=metadata,
        )

    moved = allocate(1)
    print(f"allocated {moved.numbers[0].e164}")

    inventory = pool.GetInventory(
        number_pool_pb2.GetInventoryRequest(account_id=customer.id), metadata=metadata
    )
    assert inventory.totals.total == 1, inventory
    print(f"inventory of the customer: {inventory.totals.total} number")

    # A refusal carries google.rpc details: the reason (ErrorInfo) and the broken rule
    # (PreconditionFailure).
    try:
        allocate(1000)
    except grpc.RpcError as refused:
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION, refused
        status = rpc_status.from_call(refused)
        assert status is not None, "no google.rpc.Status in the trailers"
        kinds = {}
        for detail in status.details:
            for kind in (error_details_pb2.ErrorInfo, error_details_pb2.PreconditionFailure):
                if detail.Is(kind.DESCRIPTOR):
                    message = kind()
                    detail.Unpack(message)
                    kinds[kind.__name__] = message
        assert "ErrorInfo" in kinds and "PreconditionFailure" in kinds, status
        violation = kinds["PreconditionFailure"].violations[0]
        print(f"refused: reason {kinds['ErrorInfo'].reason}, violation {violation.type}")
    else:
        print("allocating 1000 numbers out of 1 was not refused", file=sys.stderr)
        return 1
    print("python smoke: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
