"""omnireduce.controller"""
