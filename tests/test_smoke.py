from apps import basic


def test_remote_map_and_class(server):
    with basic.app.run():
        assert basic.square.remote(7) == 49
        assert list(basic.square.map(range(5))) == [0, 1, 4, 9, 16]
        assert basic.Counter(start=5).add.remote(1) == 106
