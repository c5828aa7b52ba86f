return {
    listen = { port = 3000
}
