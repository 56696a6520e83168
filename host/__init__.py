"""omnireduce.host"""
