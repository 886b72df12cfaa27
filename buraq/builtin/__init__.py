"""Built-in plugins: shipped with buraq, loaded first, registered like any other plugin."""
