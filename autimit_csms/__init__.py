"""Autimit CSMS: OCPP-J 1.6 central system, REST API and PostgreSQL schema."""
