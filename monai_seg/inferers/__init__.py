"""inferers"""
