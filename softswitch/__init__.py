"""omnireduce.softswitch"""
