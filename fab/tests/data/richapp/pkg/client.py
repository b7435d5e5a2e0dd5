app=2
