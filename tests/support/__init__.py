"""Helpers shared by the test suites: services, processes, ports and factories."""
