"""The bench plugin folder: `buraq bench` passes it to `buraq serve --plugins-dir`."""
