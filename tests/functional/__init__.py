"""Functional tests, by stage of src/mmetools/: AWS through moto_server on loopback, botocore's
Stubber or the faulty S3 proxy; those that start moto_server are marked integration."""
