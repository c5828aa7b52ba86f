-- listen.port has the wrong type, on line 4.
return {
    listen = {
        port = "abc",
    },
}
