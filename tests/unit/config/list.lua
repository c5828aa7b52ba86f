return { "a", "b" }
