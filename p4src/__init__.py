"""omnireduce.p4src"""
