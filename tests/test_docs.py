"""What the README and docs show must work as shown."""

import os

from archive import tenants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_example_tenant_file_loads_and_routes_as_its_comments_say():
    env = {"GLOBEX_AZURE_CONNECTION_STRING": "AccountName=g;AccountKey=eA==;BlobEndpoint=https://g.example",
           "UMBRELLA_ACCESS_KEY": "a", "UMBRELLA_SECRET_KEY": "b"}
    directory = tenants.load(os.path.join(ROOT, "docs", "tenants.example.yaml"), env)
    routes = {name: t.destination.url for name, t in directory.tenants.items()}
    assert routes == {"acme": "s3://acme-message-archive", "globex": "s3://globex-archive",
                      "initech": "gs://initech-archive", "umbrella": "s3://archive"}
    assert "whatsapp" not in directory.tenants["acme"].channels
    assert directory.tenants["acme"].destination.s3.object_lock_days == 2555
